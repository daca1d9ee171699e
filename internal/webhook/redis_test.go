package webhook

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tusgate/tusgate/test/testenv"
)

func redisBackend(t *testing.T, prefix string) (backend, *redis.Client) {
	srv := testenv.StartRedis(t)
	c := srv.Client()
	p := prefix
	if p == "" {
		p = DefaultRedisPrefix
	}
	read := func(hash string) func(*testing.T, string) ([]byte, bool) {
		return func(t *testing.T, id string) ([]byte, bool) {
			b, err := c.HGet(t.Context(), p+hash, id).Bytes()
			if err == redis.Nil {
				return nil, false
			}
			must(t, err)
			return b, true
		}
	}
	return backend{
		// Each value gets its own client, as another process would.
		fresh:  func() Outbox { return &RedisOutbox{Client: srv.Client(), Prefix: prefix} },
		shared: true,
		queued: func(t *testing.T, id string) ([]byte, bool) {
			b, ok := read("records")(t, id)
			_, err := c.ZScore(t.Context(), p+"due", id).Result()
			if ok != (err == nil) {
				t.Errorf("record %s in the records hash: %v, in the due set: %v", id, ok, err == nil)
			}
			return b, ok
		},
		dead: read("dead"),
		corrupt: func(t *testing.T, id string) {
			must(t, c.HSet(t.Context(), p+"records", id, "{not json").Err())
			must(t, c.ZAdd(t.Context(), p+"due", redis.Z{Score: 0, Member: id}).Err())
		},
	}, c
}

func TestRedisOutbox(t *testing.T) {
	b, c := redisBackend(t, "")
	testOutboxContract(t, b)
	keys, err := c.Keys(t.Context(), "*").Result()
	must(t, err)
	for _, k := range keys {
		if k != DefaultRedisPrefix+"records" && k != DefaultRedisPrefix+"due" && k != DefaultRedisPrefix+"dead" {
			t.Errorf("unexpected key %q", k)
		}
	}
}

func TestRedisOutboxPrefixAndRestart(t *testing.T) {
	b, c := redisBackend(t, "{hooks}:")
	testOutboxRestart(t, b)
	if n, err := c.Exists(t.Context(), "{hooks}:records", "{hooks}:due").Result(); err != nil || n != 2 {
		t.Errorf("keys under the prefix: %d, %v", n, err)
	}
}

func TestRedisOutboxConcurrentClaims(t *testing.T) {
	b, _ := redisBackend(t, "")
	testOutboxConcurrentClaims(t, b, false)
}
