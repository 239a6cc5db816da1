package fleet_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/transport"
)

type countingDialer struct {
	calls   atomic.Int64
	active  atomic.Int64
	maxSeen atomic.Int64
	fail    map[string]bool
}

func (d *countingDialer) Dial(ctx context.Context, h cluster.Host) (*transport.Client, error) {
	d.calls.Add(1)
	n := d.active.Add(1)
	defer d.active.Add(-1)
	for {
		m := d.maxSeen.Load()
		if n <= m || d.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	if d.fail[h.Name] {
		return nil, &transport.HostError{Host: h.Name, Kind: transport.KindRefused, Err: errors.New("refused")}
	}
	return nil, nil
}

func hosts(names ...string) []cluster.Host {
	out := make([]cluster.Host, len(names))
	for i, n := range names {
		out[i] = cluster.Host{Name: n}
	}
	return out
}

func TestEachBoundsConcurrencyAndReportsEveryHost(t *testing.T) {
	d := &countingDialer{fail: map[string]bool{"b": true, "d": true}}
	f := fleet.New(d, 2)
	var progress []int
	f.Progress = func(done, total int) { progress = append(progress, done) }
	hs := hosts("a", "b", "c", "d", "e")
	var ran atomic.Int64
	errs := f.Each(context.Background(), hs, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ran.Add(1)
		if h.Name == "e" {
			return errors.New("e failed")
		}
		return nil
	})
	if d.maxSeen.Load() > 2 {
		t.Errorf("%d dials at once with max_parallel 2", d.maxSeen.Load())
	}
	want := []string{"", "refused", "", "refused", "e failed"}
	for i, err := range errs {
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (want[i] == "") != (got == "") || want[i] != "" && !strings.Contains(got, want[i]) {
			t.Errorf("host %s: err %q, want %q", hs[i].Name, got, want[i])
		}
	}
	if ran.Load() != 3 {
		t.Errorf("fn ran on %d hosts, want 3 (not on the two that failed to connect)", ran.Load())
	}
	if len(progress) != 5 || progress[4] != 5 {
		t.Errorf("progress calls %v", progress)
	}
	// A second Each reuses connections and remembered failures: no new dials.
	f.Each(context.Background(), hs, func(context.Context, int, cluster.Host, transport.Conn) error { return nil })
	if d.calls.Load() != 5 {
		t.Errorf("%d dials for 5 hosts over two Each calls", d.calls.Load())
	}
}

func TestEachStopsStartingHostsWhenCancelled(t *testing.T) {
	f := fleet.New(&countingDialer{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	errs := f.Each(ctx, hosts("a", "b", "c"), func(context.Context, int, cluster.Host, transport.Conn) error {
		cancel()
		return nil
	})
	if errs[0] != nil || !errors.Is(errs[1], context.Canceled) || !errors.Is(errs[2], context.Canceled) {
		t.Errorf("errs = %v", errs)
	}
}

// N hosts cost N handshakes for a whole invocation, however many commands
// run on each: counted by the client and by the sshd servers themselves.
func TestOneHandshakePerHostWithRealSSHD(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 5, Subnet: "127.0.40."})
	d, err := transport.NewDialer(transport.Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: farm.KnownHosts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var hs []cluster.Host
	for _, h := range farm.Hosts {
		hs = append(hs, cluster.Host{Name: h.HostPort(), Addr: h.Addr, Port: h.Port, User: farm.User, IdentityFiles: []string{farm.ClientKey}})
	}
	f := fleet.New(d, 3)
	for round := 0; round < 3; round++ {
		errs := f.Each(context.Background(), hs, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
			for k := 0; k < 2; k++ {
				if _, err := c.Run(ctx, transport.Command{Line: "true"}); err != nil {
					return err
				}
			}
			return nil
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d host %s: %v", round, hs[i].Name, err)
			}
		}
	}
	f.Close()
	if got := d.Handshakes(); got != 5 {
		t.Errorf("client counted %d handshakes for 5 hosts and 30 commands", got)
	}
	if got, err := farm.Accepted(); err != nil || got != 5 {
		t.Errorf("servers accepted %d connections (%v), want 5", got, err)
	}
}

// A lost connection is dialled again when asked for (cleanup after a
// network blip); a live one is reused.
func TestClientRedialsALostConnection(t *testing.T) {
	farm := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.41."})
	d, err := transport.NewDialer(transport.Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: farm.KnownHosts, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := cluster.Host{Name: farm.Hosts[0].HostPort(), Addr: farm.Hosts[0].Addr, Port: farm.Hosts[0].Port, User: farm.User, IdentityFiles: []string{farm.ClientKey}}
	f := fleet.New(d, 1)
	defer f.Close()
	c1, err := f.Client(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := f.Client(context.Background(), h); again != c1 {
		t.Fatal("a live connection was not reused")
	}
	c1.Close()
	c2, err := f.Client(context.Background(), h)
	if err != nil || c2 == c1 || !c2.Alive() {
		t.Fatalf("lost connection not redialled: %v", err)
	}
	if _, err := c2.Run(context.Background(), transport.Command{Line: "true"}); err != nil {
		t.Fatal(err)
	}
	if d.Handshakes() != 2 {
		t.Errorf("handshakes = %d, want 2", d.Handshakes())
	}
}
