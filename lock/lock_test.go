package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/transport"
)

func farmFleet(t *testing.T, f *sshdfarm.Farm) (*fleet.Fleet, []cluster.Host) {
	t.Helper()
	d, err := transport.NewDialer(transport.Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: f.KnownHosts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	var hosts []cluster.Host
	for _, h := range f.Hosts {
		hosts = append(hosts, cluster.Host{Name: h.HostPort(), Addr: h.Addr, Port: h.Port, User: f.User, IdentityFiles: []string{f.ClientKey}})
	}
	fl := fleet.New(d, 8)
	t.Cleanup(fl.Close)
	return fl, hosts
}

// Against a real sshd host: a second holder is refused with the first
// one's description; releasing, or the holder's connection dying, lets the
// lock go. One host only: loopback hosts share this machine's /tmp, so
// they would share one lock file.
func TestLockOnRealSSHD(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.42."})
	name := "locktest-" + strings.ReplaceAll(t.Name(), "/", "-")
	cleanLock(t, name)
	f1, hosts := farmFleet(t, farm)
	f2, _ := farmFleet(t, farm)
	ctx := context.Background()

	first, err := Acquire(ctx, f1, hosts, name, "alice@ops pid 1: cvs run install")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(ctx, f2, hosts, name, "bob@ops pid 2: cvs run test")
	var be *BusyError
	if !errors.As(err, &be) || len(be.Holders) != len(hosts) || !strings.Contains(err.Error(), "alice@ops pid 1: cvs run install") {
		t.Fatalf("second holder: %v", err)
	}
	first.Release()
	second, err := Acquire(ctx, f2, hosts, name, "bob@ops pid 2: cvs run test")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The holder's connection dies: the lock goes with it, and the holder
	// learns that it lost it.
	f2.Close()
	lostBy := time.Now().Add(10 * time.Second)
	for second.Lost(hosts[0].Name) == nil && time.Now().Before(lostBy) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := second.Lost(hosts[0].Name); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("Lost after the connection closed = %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		third, err := Acquire(ctx, f1, hosts, name, "carol")
		if err == nil {
			third.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock still held after its connection closed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	second.Release()
}

// A local user of a host plants symlinks in a lock folder it can write to
// (a configured lock_dir shared by several users): cvs must neither write
// through them nor create their targets, and says what to remove.
func TestPlantedSymlinksAreNotWrittenThrough(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.43."})
	name := "locktest-planted"
	dir := sharedDir(t)
	victim := t.TempDir() + "/victim"
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := t.TempDir() + "/cron.d-x"
	for _, c := range []struct{ link, target string }{
		{dir + "/" + name + ".lock.owner.0", victim},
		{dir + "/" + name + "-2.lock", missing},
	} {
		if err := os.Symlink(c.target, c.link); err != nil {
			t.Fatal(err)
		}
	}
	f, hosts := farmFleet(t, farm)
	for _, n := range []string{name, name + "-2"} {
		held, err := Acquire(context.Background(), f, hosts, n, "alice", InDir(dir))
		if err == nil {
			held.Release()
			t.Errorf("%s: the lock was taken through a planted symlink", n)
		} else if !strings.Contains(err.Error(), "symlink") {
			t.Errorf("%s: err = %v, want one naming the symlink", n, err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the victim file was written through a planted symlink: %q", b)
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Error("a planted symlink's missing target was created")
	}
}

// sharedDir is a lock_dir as an admin makes it for several users: owned by
// root, mode 1777.
func sharedDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "locks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(dir), 0o755)
	return dir
}

// Issue 20: a lock_dir shared by several SSH users (an admin's 1777
// folder) keeps their runs apart: the lock file another user created is
// used as it is (opened read-only: no O_CREAT on another user's file in a
// sticky folder, which fs.protected_regular forbids), and a busy lock
// names the newest owner record, the holder's.
func TestLockDirSharedByUsers(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.47."})
	name := "locktest-users"
	dir := sharedDir(t)
	lockFile := dir + "/" + name + ".lock"
	other := dir + "/" + name + ".lock.owner.65534"
	for _, p := range []string{lockFile, other} {
		if err := os.WriteFile(p, []byte("bob@ops (an earlier run)\nnonce 00\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(other, old, old)
	if b, _ := os.ReadFile("/proc/sys/fs/protected_regular"); strings.TrimSpace(string(b)) == "0" {
		t.Log("fs.protected_regular is 0 here: the O_CREAT part is not exercised")
	}
	f1, hosts := farmFleet(t, farm)
	f2, _ := farmFleet(t, farm)
	first, err := Acquire(context.Background(), f1, hosts, name, "alice@ops pid 1", InDir(dir))
	if err != nil {
		t.Fatalf("taking a lock whose file another user created: %v", err)
	}
	defer first.Release()
	_, err = Acquire(context.Background(), f2, hosts, name, "carol@ops pid 2", InDir(dir))
	var be *BusyError
	if !errors.As(err, &be) || be.Holders[hosts[0].Name] != "alice@ops pid 1" {
		t.Fatalf("second holder: %v", err)
	}
}

// Issue 20, the shared home: hosts whose lock folder is one folder (an NFS
// home, here two loopback hosts of one machine) find the lock this run
// took on another host. That is named as a shared folder (exit 3), not as
// another cvs holding the lock with this run's own description.
func TestSharedLockFolderIsNamed(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 3, Subnet: "127.0.48."})
	name := "locktest-shared"
	dir := filepath.Join(t.TempDir(), "locks")
	f, hosts := farmFleet(t, farm)
	held, err := Acquire(context.Background(), f, hosts, name, "alice@ops pid 1", InDir(dir))
	if err == nil {
		held.Release()
		t.Fatal("three hosts sharing one lock folder all took the lock")
	}
	var se *SharedDirError
	if !errors.As(err, &se) || len(se.Hosts) != 2 || se.Dir != dir {
		t.Fatalf("err = %#v (%v), want a SharedDirError naming 2 hosts and %s", err, err, dir)
	}
	if msg := err.Error(); !strings.Contains(msg, "share the lock folder "+dir) || strings.Contains(msg, "another cvs") {
		t.Errorf("message: %s", msg)
	}
}

// The default folder is private to the SSH user and local: a configured
// one owned by another user is refused, naming it.
func TestLockDirOwnedByAnotherUserIsRefused(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.49."})
	dir := filepath.Join(t.TempDir(), "locks")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, 65534, 65534)
	os.Chmod(filepath.Dir(dir), 0o755)
	f, hosts := farmFleet(t, farm)
	held, err := Acquire(context.Background(), f, hosts, "locktest-owner", "alice", InDir(dir))
	if err == nil {
		held.Release()
		t.Fatal("a lock folder owned by another user was used")
	}
	if !strings.Contains(err.Error(), dir+" is owned by uid 65534") {
		t.Errorf("err = %v", err)
	}
}

// The owner record of a busy lock is text anyone who holds the lock wrote;
// printing it must never count as acquiring the lock.
func TestOwnerTextCannotForgeAcquisition(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.44."})
	name := "locktest-forge"
	cleanLock(t, name)
	f1, hosts := farmFleet(t, farm)
	f2, _ := farmFleet(t, farm)
	first, err := Acquire(context.Background(), f1, hosts, name, "cvs-lock-acquired")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	second, err := Acquire(context.Background(), f2, hosts, name, "bob")
	var be *BusyError
	if !errors.As(err, &be) {
		if second != nil {
			second.Release()
		}
		t.Fatalf("the second cvs took a held lock (err %v)", err)
	}
}

// stubConn answers every command with one result after a delay.
type stubConn struct {
	delay time.Duration
	res   transport.Result
	err   error
}

func (c stubConn) Run(ctx context.Context, _ transport.Command) (transport.Result, error) {
	select {
	case <-time.After(c.delay):
	case <-ctx.Done():
	}
	return c.res, c.err
}
func (stubConn) Upload(context.Context, string, io.Reader, os.FileMode) error { return nil }
func (stubConn) Alive() bool                                                  { return true }
func (stubConn) Close() error                                                 { return nil }

func stubFleet(c stubConn) (*fleet.Fleet, []cluster.Host) {
	f := fleet.NewWithDial(func(context.Context, cluster.Host) (transport.Conn, error) { return c, nil }, 4)
	return f, []cluster.Host{{Name: "h1"}, {Name: "h2"}}
}

// A host without flock is a clear error naming the host and the tool, not
// "busy", and not silently unlocked.
func TestNoFlockIsAnError(t *testing.T) {
	f, hosts := stubFleet(stubConn{res: transport.Result{ExitCode: 127}, err: &transport.ExitError{Host: "h1", Code: 127, StderrTail: "sh: 1: flock: not found"}})
	held, err := Acquire(context.Background(), f, hosts, "c", "me")
	if err == nil {
		held.Release()
		t.Fatal("a host without flock was taken as locked")
	}
	var be *BusyError
	if errors.As(err, &be) || !strings.Contains(err.Error(), "h1") || !strings.Contains(err.Error(), "flock") {
		t.Errorf("err = %v", err)
	}
}

// A host whose lock command fails after the host was reached is never
// taken as locked (nor left to the probe as if unreachable).
func TestLockCommandFailureIsAnError(t *testing.T) {
	f, hosts := stubFleet(stubConn{res: transport.Result{ExitCode: 1}, err: &transport.ExitError{Host: "h1", Code: 1, StderrTail: "mkdir: Permission denied"}})
	held, err := Acquire(context.Background(), f, hosts, "c", "me")
	if err == nil {
		held.Release()
		t.Fatal("a failed lock command was taken as locked")
	}
}

// A host whose lock command could not reach it (through Slurm there is no
// connection before the command: srun could not start the task there) is
// left to the probe, which reports it with the others, as over SSH; it is
// not a lock failure.
func TestLockCommandThatReachedNoHostIsUnreached(t *testing.T) {
	f, hosts := stubFleet(stubConn{res: transport.Result{ExitCode: 1},
		err: &transport.HostError{Host: "h1", Kind: transport.KindUnreachable, Detail: "srun: error: Application launch failed: Communication connection failure"}})
	held, err := Acquire(context.Background(), f, hosts, "c", "me")
	if err != nil {
		t.Fatalf("Acquire: %v, want the hosts left to the probe", err)
	}
	defer held.Release()
	if len(held.Unreached) != 2 || !strings.Contains(fmt.Sprint(held.Unreached["h1"]), "Communication connection failure") {
		t.Errorf("Unreached = %v", held.Unreached)
	}
}

// A lock that answers busy only after Acquire gave up on the host must not
// race with Acquire (go test -race).
func TestLateBusyAnswerDoesNotRace(t *testing.T) {
	old := Timeout
	Timeout = 20 * time.Millisecond
	defer func() { Timeout = old }()
	f, hosts := stubFleet(stubConn{delay: 60 * time.Millisecond, res: transport.Result{ExitCode: 75, Stdout: []byte("other\n")},
		err: &transport.ExitError{Host: "h1", Code: 75}})
	held, err := Acquire(context.Background(), f, hosts, "c", "me")
	if err == nil {
		held.Release()
		t.Fatal("no error although no host answered in time")
	}
	time.Sleep(100 * time.Millisecond)
}

// cleanLock removes the test's lock files from this machine's default lock
// folder (the loopback hosts share it) when the test ends.
func cleanLock(t *testing.T, name string) {
	dir := "/run/cvs/locks"
	if os.Getuid() != 0 {
		dir = fmt.Sprintf("/var/tmp/cvs-%d/locks", os.Getuid())
	}
	p := filepath.Join(dir, name+".lock")
	t.Cleanup(func() { os.Remove(p); os.Remove(fmt.Sprintf("%s.owner.%d", p, os.Getuid())) })
}

// Released on purpose is not lost.
func TestReleaseIsNotLoss(t *testing.T) {
	h := &Held{cancel: func() {}, lost: map[string]error{}}
	h.Release()
	h.ended("h1", nil)
	if h.Lost("h1") != nil {
		t.Error("a released lock reported lost")
	}
	var none *Held
	if none.Lost("h1") != nil {
		t.Error("nil Held reported lost")
	}
}

// freezer is a TCP proxy to one address that can stop forwarding without
// closing anything: the stand-in for a cut link (a failed switch), where
// neither end learns that the other is gone.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fz := &freezer{ln: ln}
	fz.cond = sync.NewCond(&fz.mu)
	t.Cleanup(func() { ln.Close(); fz.set(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go fz.pipe(c, s)
			go fz.pipe(s, c)
		}
	}()
	return fz
}

func (fz *freezer) set(frozen bool) {
	fz.mu.Lock()
	fz.frozen = frozen
	fz.mu.Unlock()
	fz.cond.Broadcast()
}

func (fz *freezer) wait() {
	fz.mu.Lock()
	for fz.frozen {
		fz.cond.Wait()
	}
	fz.mu.Unlock()
}

// pipe copies from src to dst while not frozen; an end that closes is
// passed on only while not frozen.
func (fz *freezer) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		fz.wait()
		n, err := src.Read(buf)
		fz.wait()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// Issue 20: the link to a host is cut while cvs holds the lock there, and
// then cvs dies. sshd on the host cannot learn it (nothing reaches it), so
// only the heartbeat can end the holder: cvs counts the host's lock as
// lost once its answers stop (LostAfter), and the host lets the lock go
// once the beats stop (Silence), so the next run is not refused.
func TestHolderReleasesWhenTheHeartbeatStops(t *testing.T) {
	oldBeat, oldSilence, oldLost := Heartbeat, Silence, LostAfter
	Heartbeat, Silence, LostAfter = 200*time.Millisecond, 2*time.Second, 1200*time.Millisecond
	t.Cleanup(func() { Heartbeat, Silence, LostAfter = oldBeat, oldSilence, oldLost })
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.46."})
	name := "locktest-heartbeat"
	dir := filepath.Join(t.TempDir(), "locks")
	fz := newFreezer(t, farm.Hosts[0].HostPort())
	proxyPort := fz.ln.Addr().(*net.TCPAddr).Port

	d, err := transport.NewDialer(transport.Options{HostKeyCheck: cluster.HostKeyOff, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	cut := fleet.New(d, 8)
	viaProxy := []cluster.Host{{Name: "h1", Addr: "127.0.0.1", Port: proxyPort, User: farm.User, IdentityFiles: []string{farm.ClientKey}}}
	held, err := Acquire(context.Background(), cut, viaProxy, name, "alice@ops pid 1", InDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the connection is closed before Release
	// waits for the holding command, which a frozen link would never end.
	t.Cleanup(held.Release)
	t.Cleanup(cut.Close)
	// Beats flow: the lock is held past Silence, and not lost.
	time.Sleep(Silence + 500*time.Millisecond)
	if err := held.Lost("h1"); err != nil {
		t.Fatalf("lost while the heartbeat flowed: %v", err)
	}
	direct, hosts := farmFleet(t, farm)
	if again, err := Acquire(context.Background(), direct, hosts, name, "bob", InDir(dir)); err == nil {
		again.Release()
		t.Fatal("a second cvs took the lock while the first one's heartbeat flowed")
	}

	fz.set(true) // the link is cut
	lostBy := time.Now().Add(LostAfter + 2*time.Second)
	for held.Lost("h1") == nil && time.Now().Before(lostBy) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := held.Lost("h1"); err == nil || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("Lost after the link was cut = %v, want a lost lock naming the heartbeat", err)
	}
	cut.Close() // cvs dies; its end of the link is closed, unseen by the host
	deadline := time.Now().Add(Silence + 5*time.Second)
	for {
		next, err := Acquire(context.Background(), direct, hosts, name, "bob", InDir(dir))
		if err == nil {
			next.Release()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lock is still held %s after the link was cut: %v", Silence+5*time.Second, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The watch's timer runs on the monotonic clock, which stands still while
// this machine sleeps; the host's holder does not. A host whose last
// answer is older than LostAfter by the wall clock is lost, whatever the
// timer says (found by review: a suspended laptop).
func TestLostByTheWallClockAfterASleep(t *testing.T) {
	h := &Held{cancel: func() {}, lost: map[string]error{}, answered: map[string]time.Time{}}
	h.answered["h1"] = time.Now().Round(0).Add(-LostAfter - time.Minute)
	h.answered["h2"] = time.Now().Round(0)
	if err := h.Lost("h1"); err == nil || !strings.Contains(err.Error(), "heartbeat") {
		t.Errorf("h1, silent for longer than LostAfter by the wall clock: Lost = %v", err)
	}
	if err := h.Lost("h2"); err != nil {
		t.Errorf("h2 answered just now: Lost = %v", err)
	}
	h.Release()
}
