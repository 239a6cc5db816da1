// Package exitcode defines cvs's exit codes and the error wrapper that
// carries one from the place a failure is understood to main.
package exitcode

import (
	"context"
	"errors"
	"syscall"
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
	Interrupted = 130 // interrupted (Ctrl-C, SIGINT)
	Terminated  = 143 // terminated (SIGTERM)
)

// SignalError is the cause of a context cancelled by a signal (see
// context.WithCancelCause): it says which one, so that the exit code can
// follow the shell's 128+N convention.
type SignalError struct{ Signal syscall.Signal }

func (e *SignalError) Error() string { return "interrupted by " + e.Signal.String() }

// Signalled is the cancellation cause for sig.
func Signalled(sig syscall.Signal) error { return &SignalError{Signal: sig} }

// Stopped is the exit code for an interrupted ctx: 143 when its cause is
// SIGTERM, 130 otherwise (SIGINT, or cancelled without a signal).
func Stopped(ctx context.Context) int {
	var se *SignalError
	if errors.As(context.Cause(ctx), &se) && se.Signal == syscall.SIGTERM {
		return Terminated
	}
	return Interrupted
}

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
