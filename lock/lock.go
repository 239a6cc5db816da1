// Package lock keeps two cvs invocations from changing the same container
// on the same hosts at once (two CI jobs with one cluster file, two
// operators): before it probes and decides, a run takes an flock on every
// host and holds it until it has torn down.
//
// The lock is a file in a folder local to each host (the cluster file's
// lock_dir; by default /run/cvs/locks for root, /var/tmp/cvs-UID/locks for
// another SSH user, each a folder only that user can create files in),
// held by a command that lives as long as cvs's session with the host and
// as long as cvs's heartbeat reaches it: if cvs dies, the connection
// drops, or the heartbeat stops for Silence (cvs died behind a cut link,
// which sshd would notice only hours later), the command ends and the
// kernel releases the lock. Nothing stale is left to clean up by hand.
//
// The folder must not be shared by the hosts (an NFS home would make every
// host flock one file): one on a network filesystem is refused, and hosts
// found holding this very run's lock are named as sharing it.
package lock

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
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

// Lines the remote command prints: the lock folder it resolved (before
// anything else), the owner record's nonce line, and one line per
// heartbeat it received.
const (
	dirLine   = "cvs-lock-dir "
	nonceLine = "nonce "
	beatLine  = "cvs-lock-beat"
)

// Exit statuses of the remote command.
const (
	exitBusy     = 75  // another holder
	exitOpen     = 74  // the lock folder or file cannot be used
	exitNotFound = 127 // no flock on the host
)

// Timeout bounds taking the lock on one host.
var Timeout = 30 * time.Second

// The heartbeat: cvs sends one every Heartbeat; the holder on a host
// releases the lock when none came for Silence; cvs counts the lock on a
// host as lost when the holder's answers stopped for LostAfter, before the
// holder can have let it go (LostAfter + the link's one-way delay <
// Silence).
var (
	Heartbeat = 5 * time.Second
	Silence   = 30 * time.Second
	LostAfter = 20 * time.Second
)

// The default lock folder (no lock_dir) is /run/cvs/locks for root and
// /var/tmp/cvs-UID/locks for another SSH user (holdScript), local and
// private to that user. Not $XDG_RUNTIME_DIR (/run/user/UID): it exists
// only while the user has a login session, so two cvs sessions (one
// through PAM, one through Slurm) could see different folders and both
// take "the" lock; /var/tmp is local, not cleaned at reboot, and not made
// private per job by Slurm's job_container/tmpfs as /tmp can be.

// holdScript takes the lock for container $1 in lock folder $4 (the
// default when empty), records $2 as the holder with nonce $3, prints the
// acquired line with the nonce, and then holds the lock while heartbeats
// arrive on its standard input at least every $5 seconds: at end-of-file
// (cvs closing the session) or after $5 s of silence it ends, and the
// kernel releases the lock. It prints one line per heartbeat.
//
// The default folder is created 0700 and checked to be a real folder owned
// by the user; a configured one must be a real folder owned by the user or
// by root (an admin's shared folder), and is never chmodded. The lock file
// is opened read-only without O_CREAT once it exists, so a folder shared by
// several users (sticky, fs.protected_regular) works; each user keeps its
// own owner record, and the newest is the holder's.
const holdScript = `umask 077
command -v flock >/dev/null 2>&1 || { echo "flock is not installed (util-linux); cvs needs it for the cluster lock" >&2; exit 127; }
timeout 5 true 2>/dev/null || { echo "timeout (coreutils) is missing or does not take a plain duration (an old busybox?); cvs needs it for the cluster lock's heartbeat" >&2; exit 127; }
u=$(id -u)
case $4 in
"") if [ "$u" = 0 ]; then b=/run/cvs; else b=/var/tmp/cvs-$u; fi
  d=$b/locks
  mkdir -p "$d" 2>/dev/null
  for p in "$b" "$d"; do
    if [ -L "$p" ] || [ ! -d "$p" ] || [ ! -O "$p" ]; then echo "$p is not a folder owned by $(id -un): remove it and run again (or set lock_dir)" >&2; exit 74; fi
  done
  chmod 700 "$b" "$d" || exit 74 ;;
"~/"*) [ -n "$HOME" ] && [ "$HOME" != / ] || { echo "lock_dir $4: the SSH user has no home folder" >&2; exit 74; }
  d=$HOME/${4#"~/"} ;;
*) d=$4 ;;
esac
if [ -n "$4" ]; then
  [ -e "$d" ] || [ -L "$d" ] || mkdir -p "$d" 2>/dev/null
  if [ -L "$d" ] || [ ! -d "$d" ]; then echo "lock_dir $d is not a folder (a symlink or missing, and it could not be created): create it or fix lock_dir" >&2; exit 74; fi
  o=$(stat -c %u "$d") || exit 74
  [ "$o" = "$u" ] || [ "$o" = 0 ] || { echo "lock_dir $d is owned by uid $o, neither $(id -un) nor root: another user could replace the lock; fix its owner or lock_dir" >&2; exit 74; }
  [ -w "$d" ] && [ -x "$d" ] || { echo "lock_dir $d is not writable by $(id -un)" >&2; exit 74; }
fi
echo ` + dirLine + `"$d"
t=$(stat -f -c %T "$d" 2>/dev/null)
case $t in nfs*|cifs|smb*|lustre|gpfs|ceph|beegfs|fhgfs|glusterfs|afs|9p|panfs|ocfs2|gfs*|fuse|fuse.*|fuseblk)
  echo "the lock folder $d is on a network filesystem ($t), which the hosts may share: the cluster lock must be local to each host; set lock_dir to a local folder" >&2; exit 74 ;;
esac
f=$d/$1.lock
{ [ -L "$f" ] || [ -L "$f.owner.$u" ]; } && { echo "$f or its owner record is a symlink: remove it and run again" >&2; exit 74; }
[ -e "$f" ] || (umask 022; : >>"$f") 2>/dev/null
[ -f "$f" ] && [ -r "$f" ] || { echo "the lock file $f cannot be created or read by $(id -un)" >&2; exit 74; }
exec 9<"$f"
if ! flock -n 9 && ! { sleep 2; flock -n 9; }; then
  o=$(ls -t "$f".owner.* 2>/dev/null | head -n 1)
  [ -z "$o" ] || cat "$o"
  exit 75
fi
(umask 022; printf '%s\n` + nonceLine + `%s\n' "$2" "$3" >"$f.owner.$u") || exit 74
echo ` + acquired + ` "$3"
while [ "$(timeout "$5" head -c 1 | wc -c)" -eq 1 ]; do echo ` + beatLine + `; done`

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
	return transport.ListHostErrors("taking the cluster lock failed (nothing was changed):", e.Failures)
}

// Held is a lock held on every host; Release lets it go.
type Held struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	released bool
	lost     map[string]error     // host → why the lock ended while held
	timers   []*time.Timer        // per host: lost when its heartbeat answers stop
	answered map[string]time.Time // per host: the wall-clock time of its last answer

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
	for _, t := range h.timers {
		t.Stop()
	}
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
	last, watched := h.answered[host]
	h.mu.Unlock()
	// Wall-clock time, not the timer's monotonic clock, which stands
	// still while this machine sleeps (a suspended laptop): the host's
	// holder kept counting and may have let the lock go.
	if watched && time.Now().Round(0).Sub(last) > LostAfter {
		h.ended(host, silent())
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

// busy is a host held by another cvs; own when the holder is this very
// run (the host shares its lock folder with a host that took it).
type busy struct {
	holder, dir string
	own         bool
}

func (b busy) Error() string { return "held by " + b.holder }

// SharedDirError is hosts whose lock folder another host of the cluster
// shares: they found the lock held by this very run. Nothing was changed.
type SharedDirError struct {
	Dir   string
	Hosts []string
}

func (e *SharedDirError) Error() string {
	return fmt.Sprintf("%s share the lock folder %s with another host of the cluster (they found it locked by this very run): "+
		"the cluster lock must be local to each host; set lock_dir in the cluster file to a folder that is not shared, such as the default (leave lock_dir out). "+
		"(Or the cluster file names one machine twice, under two names: remove the duplicate.) Nothing was changed",
		strings.Join(e.Hosts, ", "), e.Dir)
}

// Option changes how Acquire takes the lock.
type Option func(*options)

type options struct{ dir string }

// InDir takes the lock in dir on each host (the cluster file's lock_dir:
// an absolute path, or ~/ for the SSH user's home); empty is the default.
func InDir(dir string) Option { return func(o *options) { o.dir = dir } }

// Acquire takes the lock for container on every host, recording owner as
// the holder. When any host is held by another cvs it releases what it
// took and returns a *BusyError; when hosts share their lock folder, a
// *SharedDirError; when it cannot be taken on some host for any other
// reason, an *Error. Either way nothing is held. Once held, Held.Lost says
// whether a host's lock ended before Release, or its heartbeat answers
// stopped (LostAfter).
func Acquire(ctx context.Context, f *fleet.Fleet, hosts []cluster.Host, container, owner string, opts ...Option) (*Held, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	holdCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	held := &Held{cancel: cancel, lost: map[string]error{}, answered: map[string]time.Time{}}
	nonce := newNonce()
	silence := strconv.Itoa(int((Silence + time.Second - 1) / time.Second))
	line := shell.Join("sh", "-c", holdScript, "cvs-lock", container, owner, nonce, o.dir, silence)
	errs := f.Each(ctx, hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) error {
		ready := make(chan struct{})
		out := &holderOutput{marker: acquired + " " + nonce, ready: ready}
		done := make(chan error, 1)
		held.wg.Add(1)
		go func() {
			defer held.wg.Done()
			// Rerun: through Slurm, a step aborted by another node's failed
			// launch kills this command (which releases the flock); it is
			// taken again. Should another cvs take it in between, the rerun
			// answers busy and the host's lock counts as lost (ended).
			res, err := c.Run(holdCtx, transport.Command{Line: line, Stdout: out, ForwardStdin: true, Heartbeat: Heartbeat, Rerun: true})
			select {
			case <-ready:
				held.ended(h.Name, err)
				return
			default:
			}
			var ee *transport.ExitError
			switch {
			case errors.As(err, &ee) && ee.Code == exitBusy:
				err = parseBusy(string(res.Stdout), nonce)
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
			held.watch(h.Name, out)
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
	shared := &SharedDirError{}
	held.Unreached = map[string]error{}
	for i, err := range errs {
		var b busy
		switch {
		case err == nil:
		case errors.As(err, &b) && b.own:
			shared.Hosts = append(shared.Hosts, hosts[i].Name)
			shared.Dir = b.dir
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
	case len(shared.Hosts) > 0:
		held.Release()
		return nil, shared
	case len(holders) > 0:
		held.Release()
		return nil, &BusyError{Container: container, Holders: holders}
	case len(failures) > 0:
		held.Release()
		return nil, &Error{Failures: failures}
	}
	return held, nil
}

// parseBusy reads what the lock command printed on a busy lock: the folder,
// then the holder's owner record (its description and its nonce).
func parseBusy(out, nonce string) busy {
	var b busy
	var desc []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(l, dirLine):
			b.dir = strings.TrimPrefix(l, dirLine)
		case strings.HasPrefix(l, nonceLine):
			b.own = strings.TrimPrefix(l, nonceLine) == nonce
		case strings.TrimSpace(l) != "":
			desc = append(desc, strings.TrimSpace(l))
		}
	}
	b.holder = strings.Join(desc, " ")
	return b
}

// watch counts host's lock as lost once the holder's heartbeat answers
// stop for LostAfter: the holder lets the lock go after Silence without a
// heartbeat, so cvs must stop changing the host before that.
func (h *Held) watch(host string, out *holderOutput) {
	t := time.AfterFunc(LostAfter, func() { h.ended(host, silent()) })
	answered := func() {
		h.mu.Lock()
		h.answered[host] = time.Now().Round(0)
		h.mu.Unlock()
	}
	answered()
	h.mu.Lock()
	h.timers = append(h.timers, t)
	h.mu.Unlock()
	out.onBeat(func() { answered(); t.Reset(LostAfter) })
}

// silent is why a host's lock counts as lost when its heartbeat answers
// stopped.
func silent() error {
	return fmt.Errorf("no answer to its heartbeat for %s: the host or the link to it is gone, and the host lets the lock go by itself after %s", LostAfter, Silence)
}

func newNonce() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// holderOutput reads the holding command's output line by line: it closes
// ready at the acquired line equal to marker, and calls the beat function
// at every heartbeat answer after it. Complete lines are not kept.
type holderOutput struct {
	mu     sync.Mutex
	part   []byte
	marker string
	ready  chan struct{}
	seen   bool
	beat   func()
}

func (w *holderOutput) onBeat(f func()) {
	w.mu.Lock()
	w.beat = f
	w.mu.Unlock()
}

func (w *holderOutput) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.part[:i]))
		w.part = w.part[i+1:]
		switch {
		case !w.seen && line == w.marker:
			w.seen = true
			close(w.ready)
		case w.seen && line == beatLine && w.beat != nil:
			w.beat()
		}
	}
	if len(w.part) > 64<<10 {
		w.part = w.part[:0] // no line of ours is this long
	}
	return len(b), nil
}
