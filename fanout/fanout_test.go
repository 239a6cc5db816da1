package fanout

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunBoundsAndOrders(t *testing.T) {
	var active, maxSeen atomic.Int64
	errs := Run(context.Background(), 20, 3, func(_ context.Context, i int) error {
		n := active.Add(1)
		defer active.Add(-1)
		for {
			m := maxSeen.Load()
			if n <= m || maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		if i%5 == 0 {
			return errors.New(strings.Repeat("x", i))
		}
		return nil
	})
	if maxSeen.Load() > 3 {
		t.Errorf("%d at once, limit 3", maxSeen.Load())
	}
	for i, err := range errs {
		if (i%5 == 0) != (err != nil) || err != nil && len(err.Error()) != i {
			t.Errorf("errs[%d] = %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, err := range Run(ctx, 3, 2, func(context.Context, int) error { t.Error("ran after cancel"); return nil }) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("errs[%d] = %v after cancel", i, err)
		}
	}
}
