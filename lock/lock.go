// Package lock keeps two cvs invocations from changing the same container
// on the same hosts at once (two CI jobs with one cluster file, two
// operators): before it probes and decides, a run takes an flock on every
// host and holds it until it has torn down.
//
// The lock is a file on each host's own filesystem held by a command that
// lives as long as the SSH session: if cvs dies or the connection drops,
// sshd ends the session, the command dies, and the kernel releases the
// lock. Nothing stale is left to clean up by hand.
package lock

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// acquired is printed by the remote command once it holds the lock.
const acquired = "cvs-lock-acquired"

// Exit statuses of the remote command.
const (
	exitBusy     = 75  // another holder
	exitOpen     = 74  // the lock file cannot be opened
	exitNotFound = 127 // no flock on the host
)

// Timeout bounds taking the lock on one host.
const Timeout = 30 * time.Second

// holdScript takes the lock on file $1 (mode 0666 so that other users'
// cvs can take it too), records $2 as the holder, says so, and waits for
// its standard input to end (cvs closing the session) while holding it.
const holdScript = `umask 000; exec 9>>"$1" || exit 74
flock -n 9 || { cat "$1.owner" 2>/dev/null; exit 75; }
printf '%s\n' "$2" >"$1.owner"
echo ` + acquired + `
exec cat >/dev/null`

// Path is the lock file on each host for a container name.
func Path(container string) string { return "/tmp/cvs-" + container + ".lock" }

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

// Held is a lock held on every host; Release lets it go.
type Held struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Release lets the lock go on every host and waits until the holding
// commands ended. It is safe to call on nil and more than once.
func (h *Held) Release() {
	if h == nil {
		return
	}
	h.cancel()
	h.wg.Wait()
}

// Acquire takes the lock for container on every host, recording owner as
// the holder. When any host is held by another cvs it releases what it
// took and returns a *BusyError. A host without flock is logged and not
// locked: the lock protects against accidents, it is not a precondition.
func Acquire(ctx context.Context, f *fleet.Fleet, hosts []cluster.Host, container, owner string, lg *log.Logger) (*Held, error) {
	holdCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	held := &Held{cancel: cancel}
	var mu sync.Mutex
	busy := map[string]string{}
	errs := f.Each(ctx, hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ready := make(chan struct{})
		out := &watchWriter{marker: acquired, ready: ready}
		done := make(chan error, 1)
		held.wg.Add(1)
		go func() {
			defer held.wg.Done()
			res, err := c.Run(holdCtx, transport.Command{Line: shell.Join("sh", "-c", holdScript, "cvs-lock", Path(container), owner), Stdout: out, ForwardStdin: true})
			var ee *transport.ExitError
			switch {
			case errors.As(err, &ee) && ee.Code == exitBusy:
				mu.Lock()
				busy[h.Name] = strings.TrimSpace(string(res.Stdout))
				mu.Unlock()
				err = nil
			case errors.As(err, &ee) && ee.Code == exitNotFound:
				lg.Warn("no flock on this host: it is not locked against another cvs working on it", "host", h.Name)
				err = nil
			case errors.As(err, &ee) && ee.Code == exitOpen:
				err = fmt.Errorf("cannot open the lock file %s: %s", Path(container), ee.StderrTail)
			}
			done <- err
		}()
		timer := time.NewTimer(Timeout)
		defer timer.Stop()
		select {
		case <-ready:
			return nil
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("taking the lock did not finish within %s", Timeout)
		}
	})
	var failed []string
	for i, err := range errs {
		// A host that cannot be reached is left to the probe, which reports
		// it with the others; it cannot be changed by anyone through cvs
		// anyway.
		if err != nil && !transport.IsConnectError(err) {
			failed = append(failed, fmt.Sprintf("%s: %v", hosts[i].Name, err))
		}
	}
	switch {
	case len(busy) > 0:
		held.Release()
		return nil, &BusyError{Container: container, Holders: busy}
	case len(failed) > 0:
		held.Release()
		return nil, fmt.Errorf("taking the cluster lock failed:\n  %s", strings.Join(failed, "\n  "))
	}
	return held, nil
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
