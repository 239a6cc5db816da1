// Package lock keeps two cvs invocations from changing the same container
// on the same hosts at once (two CI jobs with one cluster file, two
// operators): before it probes and decides, a run takes an flock on every
// host and holds it until it has torn down.
//
// The lock is a file on each host's own filesystem, in a folder only the
// SSH user can create files in (~/.cache/cvs/locks, mode 0700), held by a
// command that
// lives as long as the SSH session: if cvs dies or the connection drops,
// sshd ends the session, the command dies, and the kernel releases the
// lock. Nothing stale is left to clean up by hand.
package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// acquired starts the line the remote command prints once it holds the
// lock; the line ends with this run's nonce, which nothing on the host can
// know in advance, so no text a busy lock prints can pass for it.
const acquired = "cvs-lock-acquired"

// Exit statuses of the remote command.
const (
	exitBusy     = 75  // another holder
	exitOpen     = 74  // the lock folder or file cannot be used
	exitNotFound = 127 // no flock on the host
)

// Timeout bounds taking the lock on one host.
var Timeout = 30 * time.Second

// Dir is where the lock files live on each host, relative to the SSH
// user's home: a folder only that user (or root) can create files in, so
// that no other local user can plant a file or a symlink there.
const Dir = ".cache/cvs/locks"

// holdScript takes the lock for container $1 in the SSH user's private
// lock folder, records $2 as the holder, prints the acquired line with
// nonce $3, and waits for its standard input to end (cvs closing the
// session) while holding it. The folder is created 0700 and checked to be
// a real folder owned by the user before anything is opened in it.
const holdScript = `umask 077
command -v flock >/dev/null 2>&1 || { echo "flock is not installed (util-linux); cvs needs it for the cluster lock" >&2; exit 127; }
[ -n "$HOME" ] && [ "$HOME" != / ] || { echo "the SSH user has no home folder for the lock" >&2; exit 74; }
d="$HOME/` + Dir + `"
mkdir -p "$d" 2>/dev/null
for p in "$HOME/.cache" "$HOME/.cache/cvs" "$d"; do
  if [ -L "$p" ] || [ ! -d "$p" ] || [ ! -O "$p" ]; then echo "$p is not a folder owned by $(id -un): remove it and run again" >&2; exit 74; fi
done
chmod 700 "$d" || exit 74
f="$d/$1.lock"
{ [ -L "$f" ] || [ -L "$f.owner" ]; } && { echo "$f or its .owner is a symlink: remove it and run again" >&2; exit 74; }
exec 9>>"$f" || exit 74
flock -n 9 || { cat "$f.owner" 2>/dev/null; exit 75; }
printf '%s\n' "$2" >"$f.owner"
echo ` + acquired + ` "$3"
exec cat >/dev/null`

// Path is the lock file of a container on each host, as the README and
// errors name it.
func Path(container string) string { return "~/" + Dir + "/" + container + ".lock" }

// BusyError says which hosts another cvs holds, and who it is.
type BusyError struct {
	Container string
	Holders   map[string]string // host → holder description
}

func (e *BusyError) Error() string {
	hosts := make([]string, 0, len(e.Holders))
	for h := range e.Holders {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	fmt.Fprintf(&b, "another cvs is working on container %q; wait for it to finish (nothing was changed):", e.Container)
	for _, h := range hosts {
		holder := e.Holders[h]
		if holder == "" {
			holder = "holder unknown"
		}
		fmt.Fprintf(&b, "\n  %s: held by %s", h, holder)
	}
	return b.String()
}

// Error is a lock that could not be taken on some hosts (no flock, an
// unusable lock folder, a lost connection, no answer in time). Nothing was
// changed.
type Error struct {
	Failures map[string]error // host → why
}

func (e *Error) Error() string {
	hosts := make([]string, 0, len(e.Failures))
	for h := range e.Failures {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var b strings.Builder
	b.WriteString("taking the cluster lock failed (nothing was changed):")
	for _, h := range hosts {
		fmt.Fprintf(&b, "\n  %s: %v", h, e.Failures[h])
	}
	return b.String()
}

// Held is a lock held on every host; Release lets it go.
type Held struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	released bool
	lost     map[string]error // host → why the lock ended while held

	// Unreached are the hosts that could not be connected to: they are not
	// locked, and must not be changed (the probe reports them).
	Unreached map[string]error
}

// Release lets the lock go on every host and waits until the holding
// commands ended. It is safe to call on nil and more than once.
func (h *Held) Release() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.released = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// Lost returns why the lock on host ended while it was held (its SSH
// session dropped, the holding command was killed), or nil. A host whose
// lock is lost must not be changed any further. Safe on nil.
func (h *Held) Lost(host string) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost[host]
}

func (h *Held) ended(host string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return
	}
	if err == nil {
		err = errors.New("the command holding it ended")
	}
	h.lost[host] = fmt.Errorf("the cluster lock on this host was lost (%v); no further changes are made here", err)
}

// reached wraps the failure of a host that was connected to: unlike a
// host that could not be reached at all, it is a lock failure.
type reached struct{ err error }

func (r reached) Error() string { return r.err.Error() }
func (r reached) Unwrap() error { return r.err }

// busy is a host held by another cvs.
type busy struct{ holder string }

func (b busy) Error() string { return "held by " + b.holder }

// Acquire takes the lock for container on every host, recording owner as
// the holder. When any host is held by another cvs it releases what it
// took and returns a *BusyError; when it cannot be taken on some host for
// any other reason, an *Error. Either way nothing is held. Once held,
// Held.Lost says whether a host's lock ended before Release.
func Acquire(ctx context.Context, f *fleet.Fleet, hosts []cluster.Host, container, owner string) (*Held, error) {
	holdCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	held := &Held{cancel: cancel, lost: map[string]error{}}
	nonce := newNonce()
	errs := f.Each(ctx, hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ready := make(chan struct{})
		out := &watchWriter{marker: acquired + " " + nonce, ready: ready}
		done := make(chan error, 1)
		held.wg.Add(1)
		go func() {
			defer held.wg.Done()
			// Rerun: through Slurm, a step aborted by another node's failed
			// launch kills this command (which releases the flock); it is
			// taken again. Should another cvs take it in between, the rerun
			// answers busy and the host's lock counts as lost (ended).
			res, err := c.Run(holdCtx, transport.Command{Line: shell.Join("sh", "-c", holdScript, "cvs-lock", container, owner, nonce), Stdout: out, ForwardStdin: true, Rerun: true})
			select {
			case <-ready:
				held.ended(h.Name, err)
				return
			default:
			}
			var ee *transport.ExitError
			switch {
			case errors.As(err, &ee) && ee.Code == exitBusy:
				err = busy{holder: strings.TrimSpace(string(res.Stdout))}
			case errors.As(err, &ee) && (ee.Code == exitNotFound || ee.Code == exitOpen):
				err = errors.New(ee.StderrTail)
			case err == nil:
				err = errors.New("the lock command ended without taking the lock")
			}
			done <- err
		}()
		timer := time.NewTimer(Timeout)
		defer timer.Stop()
		select {
		case <-ready:
			return nil
		case err := <-done:
			if transport.NeverReached(err) {
				return err // through Slurm: srun could not start it there
			}
			return reached{err}
		case <-ctx.Done():
			return reached{ctx.Err()}
		case <-timer.C:
			return reached{fmt.Errorf("taking the lock did not finish within %s", Timeout)}
		}
	})
	holders := map[string]string{}
	failures := map[string]error{}
	held.Unreached = map[string]error{}
	for i, err := range errs {
		var b busy
		switch {
		case err == nil:
		case errors.As(err, &b):
			holders[hosts[i].Name] = b.holder
		case !errors.As(err, new(reached)):
			// Never reached: the probe reports the host with the others;
			// the caller must not change it.
			held.Unreached[hosts[i].Name] = err
		default:
			failures[hosts[i].Name] = err
		}
	}
	switch {
	case len(holders) > 0:
		held.Release()
		return nil, &BusyError{Container: container, Holders: holders}
	case len(failures) > 0:
		held.Release()
		return nil, &Error{Failures: failures}
	}
	return held, nil
}

func newNonce() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// watchWriter closes ready when a line equal to marker has been written.
type watchWriter struct {
	mu     sync.Mutex
	buf    []byte
	marker string
	ready  chan struct{}
	seen   bool
}

func (w *watchWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen {
		return len(b), nil
	}
	w.buf = append(w.buf, b...)
	for _, line := range strings.Split(string(w.buf), "\n") {
		if strings.TrimSpace(line) == w.marker {
			w.seen = true
			close(w.ready)
			break
		}
	}
	return len(b), nil
}
