package s3backend

import (
	"container/list"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// listCacheSize bounds the uploads whose parts are remembered; an upload of
// 10,000 parts takes about 1 MiB.
const listCacheSize = 256

// listCache remembers the contiguous parts of recently listed uploads,
// least recently used first out. Hand-written: a map and a list are all it
// takes, and no LRU library is among the project's dependencies.
type listCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of string keys, most recent at the front
	items map[string]*listEntry
}

type listEntry struct {
	parts []types.Part
	elem  *list.Element
}

func newListCache(max int) *listCache {
	return &listCache{max: max, order: list.New(), items: map[string]*listEntry{}}
}

func (c *listCache) get(key string) []types.Part {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[key]
	if e == nil {
		return nil
	}
	c.order.MoveToFront(e.elem)
	return e.parts
}

func (c *listCache) put(key string, parts []types.Part) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(parts) == 0 {
		c.dropLocked(key)
		return
	}
	parts = slices.Clone(parts)
	if e := c.items[key]; e != nil {
		e.parts = parts
		c.order.MoveToFront(e.elem)
		return
	}
	c.items[key] = &listEntry{parts: parts, elem: c.order.PushFront(key)}
	for c.order.Len() > c.max {
		c.dropLocked(c.order.Back().Value.(string))
	}
}

func (c *listCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(key)
}

func (c *listCache) dropLocked(key string) {
	if e := c.items[key]; e != nil {
		c.order.Remove(e.elem)
		delete(c.items, key)
	}
}

// trim keeps at most the first n parts of key's run.
func (c *listCache) trim(key string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[key]; e != nil && len(e.parts) > n {
		e.parts = e.parts[:max(n, 0)]
	}
}
