// Package fanout is the one bounded fan-out of the tree: fleet.Each (one
// SSH connection per host) builds on it, and so do the lab and the test
// sshd farm. It depends on nothing of cvs, so every layer may use it.
package fanout

import (
	"context"
	"sync"
	"sync/atomic"
)

// Run runs fn(ctx, i) for i in [0, n), at most limit at a time, and
// returns one error per i, in order. Once ctx ends, the calls not started
// yet get ctx's error instead of running.
func Run(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) []error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(limit, 1), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				errs[i] = fn(ctx, i)
			}
		})
	}
	wg.Wait()
	return errs
}
