package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// cleanup deletes what the run stored.
func (b *bench) cleanup(ctx context.Context, locs []string, errs []error, stderr io.Writer) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex
	failed := 0
	forEach(len(locs), min(b.o.concurrency, 16), func(i int) error {
		var err error
		switch {
		case b.direct != nil && errs[i] == nil: // failed ones were aborted
			err = b.direct.Delete(cctx, b.direct.Key(i))
		case b.gate != nil && locs[i] != "":
			err = b.objects.Delete(cctx, locs[i])
		case b.direct == nil && b.gate == nil && locs[i] != "":
			err = b.tus.Delete(cctx, locs[i])
		}
		if err != nil {
			mu.Lock()
			if failed++; failed <= 3 {
				fmt.Fprintf(stderr, "tusgate-bench: warning: deleting upload %d: %v\n", i, err)
			}
			mu.Unlock()
		}
		return err
	})
}

// reportErrors prints the first few distinct errors and keeps the first.
func reportErrors(res *Result, errs []error, stderr io.Writer) {
	seen := map[string]bool{}
	for i, err := range errs {
		if err == nil {
			continue
		}
		msg := err.Error()
		if res.FirstError == "" {
			res.FirstError = msg
		}
		if !seen[msg] && len(seen) < 5 {
			seen[msg] = true
			fmt.Fprintf(stderr, "tusgate-bench: %s #%d: %s\n", res.Label, i, msg)
		}
	}
}
