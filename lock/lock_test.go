package lock

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"

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
	t.Cleanup(func() { os.Remove(Path(name)); os.Remove(Path(name) + ".owner") })
	lg := log.New(io.Discard)
	f1, hosts := farmFleet(t, farm)
	f2, _ := farmFleet(t, farm)
	ctx := context.Background()

	first, err := Acquire(ctx, f1, hosts, name, "alice@ops pid 1: cvs run install", lg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(ctx, f2, hosts, name, "bob@ops pid 2: cvs run test", lg)
	var be *BusyError
	if !errors.As(err, &be) || len(be.Holders) != len(hosts) || !strings.Contains(err.Error(), "alice@ops pid 1: cvs run install") {
		t.Fatalf("second holder: %v", err)
	}
	first.Release()
	second, err := Acquire(ctx, f2, hosts, name, "bob@ops pid 2: cvs run test", lg)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// The holder's connection dies: the lock goes with it.
	f2.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		third, err := Acquire(ctx, f1, hosts, name, "carol", lg)
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
