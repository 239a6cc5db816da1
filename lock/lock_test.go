package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// A local user of a host plants symlinks where the lock used to live,
// /tmp/cvs-NAME.lock(.owner): cvs must neither write through them nor
// create their targets.
func TestPlantedSymlinksAreNotWrittenThrough(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.43."})
	name := "locktest-planted"
	cleanLock(t, name)
	dir := t.TempDir()
	victim := dir + "/victim"
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := dir + "/cron.d-x"
	for link, target := range map[string]string{"/tmp/cvs-" + name + ".lock.owner": victim, "/tmp/cvs-" + name + ".lock": missing} {
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(link) })
	}
	f, hosts := farmFleet(t, farm)
	held, err := Acquire(context.Background(), f, hosts, name, "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the victim file was written through a planted symlink: %q", b)
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Error("a planted symlink's missing target was created")
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

// cleanLock removes the test's lock files from this machine's lock folder
// (the loopback hosts share it) when the test ends.
func cleanLock(t *testing.T, name string) {
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, Dir, name+".lock")
	t.Cleanup(func() { os.Remove(p); os.Remove(p + ".owner") })
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
