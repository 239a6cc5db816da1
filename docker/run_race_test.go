package docker

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/transport"
)

// slowDockerd answers image inspect, and runs docker run as the SSH
// transport and dockerd do: the command returns when its ctx ends (the
// client is killed), while the daemon finishes creating the container
// when release closes.
type slowDockerd struct {
	mu      sync.Mutex
	created bool
	release chan struct{}
	lines   []string
}

func (d *slowDockerd) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	d.mu.Lock()
	d.lines = append(d.lines, cmd.Line)
	d.mu.Unlock()
	switch {
	case strings.HasPrefix(cmd.Line, "docker image inspect"):
		return transport.Result{Stdout: []byte("sha256:" + strings.Repeat("a", 64) + "\n")}, nil
	case strings.HasPrefix(cmd.Line, "docker run"):
		go func() {
			<-d.release
			d.mu.Lock()
			d.created = true
			d.mu.Unlock()
		}()
		select {
		case <-d.release:
			time.Sleep(10 * time.Millisecond)
			return transport.Result{Stdout: []byte("c0ffee\n")}, nil
		case <-ctx.Done():
			return transport.Result{ExitCode: -1}, ctx.Err()
		}
	}
	return transport.Result{ExitCode: 1}, &transport.ExitError{Code: 1}
}

// A docker run of an image the host holds, interrupted while dockerd
// creates the container, returns (with an error) only once docker run is
// over, so that the cleanup that looks for the run's containers next finds
// it.
func TestCLIRunInterruptedDuringCreateWaitsForIt(t *testing.T) {
	d := &slowDockerd{release: make(chan struct{})}
	e := CLIEngine{Host: d}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
		time.Sleep(200 * time.Millisecond)
		close(d.release)
	}()
	_, err := e.Run(ctx, RunSpec{Name: "c", Image: "img:1"})
	d.mu.Lock()
	created := d.created
	d.mu.Unlock()
	if err == nil {
		t.Fatal("an interrupted run reported success")
	}
	if !created {
		t.Errorf("Run returned (%v) while dockerd was still creating the container", err)
	}
}

// recorder answers every command with success and keeps them.
type recorder struct {
	mu   sync.Mutex
	cmds []transport.Command
}

func (r *recorder) Run(_ context.Context, cmd transport.Command) (transport.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmds = append(r.cmds, cmd)
	return transport.Result{Stdout: []byte("sha256:" + strings.Repeat("b", 64) + "\n")}, nil
}

// The docker commands that only read may be run twice (through Slurm,
// after another node's failed launch aborted them); those that change the
// host never are.
func TestOnlyReadingCommandsMayRunTwice(t *testing.T) {
	ctx := context.Background()
	reads := &recorder{}
	e := CLIEngine{Host: reads}
	e.Inspect(ctx, "c")
	e.PsByLabel(ctx, "k", "v")
	e.ImageID(ctx, "img:1")
	e.ImageLayers(ctx)
	writes := &recorder{}
	w := CLIEngine{Host: writes}
	w.Remove(ctx, "c")
	w.Start(ctx, "c")
	w.Tag(ctx, "a", "b")
	if len(reads.cmds) < 4 || len(writes.cmds) != 3 {
		t.Fatalf("ran %d reads, %d writes", len(reads.cmds), len(writes.cmds))
	}
	for _, c := range reads.cmds {
		if !c.Rerun {
			t.Errorf("%s: a read, not marked Rerun", c.Line)
		}
	}
	for _, c := range writes.cmds {
		if c.Rerun {
			t.Errorf("%s: changes the host, marked Rerun", c.Line)
		}
	}
}
