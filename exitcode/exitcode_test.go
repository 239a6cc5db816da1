package exitcode

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, OK},
		{errors.New("plain"), Failed},
		{With(Refused, errors.New("x")), Refused},
		{fmt.Errorf("wrapped: %w", With(Cleanup, errors.New("x"))), Cleanup},
		{context.Canceled, Interrupted},
		{With(Preflight, context.Canceled), Preflight},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if With(Usage, nil) != nil {
		t.Error("With(code, nil) must be nil")
	}
}
