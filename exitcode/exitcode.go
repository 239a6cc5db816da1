// Package exitcode defines cvs's exit codes and the error wrapper that
// carries one from the place a failure is understood to main.
package exitcode

import (
	"context"
	"errors"
)

// The exit codes, documented in the README.
const (
	OK          = 0   // everything succeeded
	Failed      = 1   // a command or a suite step failed
	Usage       = 2   // bad flags or a bad cluster file
	Preflight   = 3   // a host could not be used (unreachable, auth, host key, no Docker); nothing changed
	Partial     = 4   // failed after changes began
	Refused     = 5   // refused: the cluster's state makes going on unsafe; nothing changed
	Cleanup     = 6   // cleanup incomplete: something cvs started is left behind
	Interrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

// Error is an error with an exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With wraps err with code; nil stays nil.
func With(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Of returns the exit code for err: its *Error's code, Interrupted for a
// cancelled context, Failed otherwise, OK for nil.
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) {
		return Interrupted
	}
	return Failed
}
