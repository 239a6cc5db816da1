package transport

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/report"
)

// Kind classifies why a host could not be used.
type Kind string

const (
	// KindUnreachable: the address could not be reached (no route, DNS,
	// connect timeout, connection reset).
	KindUnreachable Kind = "unreachable"
	// KindRefused: the host answered but nothing listens on the SSH port.
	KindRefused Kind = "connection-refused"
	// KindAuth: the host refused every key offered.
	KindAuth Kind = "auth-failed"
	// KindHostKeyUnknown: known_hosts has no key for the host (strict).
	KindHostKeyUnknown Kind = "host-key-unknown"
	// KindHostKeyMismatch: the host offered a key other than the recorded
	// one. Never retried.
	KindHostKeyMismatch Kind = "host-key-mismatch"
	// KindHostKeyRevoked: the host offered a key marked @revoked.
	KindHostKeyRevoked Kind = "host-key-revoked"
	// KindTimeout: the SSH handshake or a command ran out of time.
	KindTimeout Kind = "timeout"
	// KindSSH: any other SSH-level failure (protocol, lost connection).
	KindSSH Kind = "ssh-error"
	// KindExit: the command ran and exited non-zero (exec's results).
	KindExit Kind = "exit"
)

// ListHostErrors is heading followed by one indented line per host, in
// host order: the text of an error that failed on several hosts, each with
// its own cause (the lock, a suite's staging).
func ListHostErrors(heading string, errs map[string]error) string {
	hosts := make([]string, 0, len(errs))
	for h := range errs {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	b.WriteString(heading)
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n  %s: %v", h, errs[h])
	}
	return b.String()
}

// HostError is a failure to connect to, or talk to, one host. Err holds the
// underlying error; Detail is the operator-facing explanation.
//
// Like every error of this package it keeps the host as a field and out of
// Error(): the code that reports per-host results (the fan-out's callers)
// names the host once.
type HostError struct {
	Host   string
	Kind   Kind
	Detail string
	Err    error
}

func (e *HostError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
	}
	return fmt.Sprintf("%s: %v", e.Kind, e.Err)
}

func (e *HostError) Unwrap() error { return e.Err }

// ExitError is a remote command that ran and exited non-zero (or was killed
// by a signal, then Code is -1 and Signal names it).
type ExitError struct {
	Host   string
	Cmd    string
	Code   int
	Signal string
	// StderrTail is the last lines of the command's standard error.
	StderrTail string
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exit status %d", e.Code)
	if e.Signal != "" {
		how = "killed by signal " + e.Signal
	}
	msg := fmt.Sprintf("command %s: %s", abbreviate(e.Cmd, 120), how)
	if e.StderrTail != "" {
		msg += "\n" + report.Indent(e.StderrTail, "  | ")
	}
	return msg
}

// TimeoutError is a command that ran longer than its time limit; the remote
// process group was killed.
type TimeoutError struct {
	Host  string
	Cmd   string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("command %s: timed out after %s; the remote command was killed", abbreviate(e.Cmd, 120), e.After.Round(time.Millisecond))
}

// IsConnectError reports whether err means a host could not be connected
// to or authenticated with: the preflight class of failures.
func IsConnectError(err error) bool {
	var he *HostError
	return errors.As(err, &he)
}

// NeverReached reports whether err means nothing ran on the host: it could
// not be reached, refused the connection, or refused cvs's keys or host
// key (over SSH these come from connecting; through Slurm, from srun
// failing to start the task there). A command that failed after reaching
// the host, or was lost part-way, is not.
func NeverReached(err error) bool {
	switch ErrorKind(err) {
	case KindUnreachable, KindRefused, KindAuth, KindHostKeyUnknown, KindHostKeyMismatch, KindHostKeyRevoked:
		return true
	}
	return false
}

// ErrorKind returns the Kind of a *HostError in err's chain, KindTimeout for
// a *TimeoutError, KindExit for an *ExitError, or "".
func ErrorKind(err error) Kind {
	var he *HostError
	var te *TimeoutError
	var ee *ExitError
	switch {
	case errors.As(err, &he):
		return he.Kind
	case errors.As(err, &te):
		return KindTimeout
	case errors.As(err, &ee):
		return KindExit
	}
	return ""
}

func abbreviate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", "⏎")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// Outcome says in a few words how a remote command ended badly: "exit
// status 3", "killed by signal KILL", "timed out after 2s; the remote
// command was killed", or err's text.
func Outcome(err error) string {
	var ee *ExitError
	var te *TimeoutError
	switch {
	case errors.As(err, &ee) && ee.Signal != "":
		return "killed by signal " + ee.Signal
	case errors.As(err, &ee):
		return fmt.Sprintf("exit status %d", ee.Code)
	case errors.As(err, &te):
		return fmt.Sprintf("timed out after %s; the remote command was killed", te.After.Round(time.Millisecond))
	case err != nil:
		return err.Error()
	}
	return ""
}

// stopped is the error of a command that ctx ended after it started at
// start: a *TimeoutError at a deadline, the context's error otherwise.
func stopped(ctx context.Context, host string, cmd Command, start time.Time) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TimeoutError{Host: host, Cmd: cmd.name(), After: time.Since(start)}
	}
	return fmt.Errorf("command %s: %w", abbreviate(cmd.name(), 80), ctx.Err())
}
