package dockerapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/transport"
)

// hungDaemon is a Docker API that answers its version and, when runsExecs,
// runs an exec to its end (the output, then the end of the stream); every
// other request is never answered, as with a dockerd that stopped
// answering. Each request that hangs is sent on hung.
type hungDaemon struct {
	runsExecs bool
	output    string
	hung      chan string
}

func (d *hungDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if answerHandshake(w, r) {
		return
	}
	switch p := r.URL.Path; {
	case d.runsExecs && strings.HasSuffix(p, "/exec"):
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"Id": "e1"})
	case d.runsExecs && strings.HasSuffix(p, "/exec/e1/start"):
		io.Copy(io.Discard, r.Body) // closing on an unread request resets it
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		frame := make([]byte, 8, 8+len(d.output))
		frame[0] = 1 // stdout
		binary.BigEndian.PutUint32(frame[4:], uint32(len(d.output)))
		buf.Write(append(frame, d.output...))
		buf.Flush()
	default:
		select {
		case d.hung <- r.Method + " " + p:
		default:
		}
		<-r.Context().Done() // answered never; the test's end closes it
	}
}

// openHung opens an engine on a hungDaemon whose short calls are limited
// to limit.
func openHung(t *testing.T, d *hungDaemon, limit time.Duration) *Engine {
	t.Helper()
	d.hung = make(chan string, 16)
	e := openFake(t, d)
	e.limit = limit
	return e
}

// returnsWithin runs call and fails the test if it has not returned
// within d (it is left behind: the daemon's end at cleanup ends it).
func returnsWithin(t *testing.T, d time.Duration, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still waiting for the daemon after %s", what, d)
		return nil
	}
}

// Issue 20, item 6: a daemon that stops answering once a step's output is
// over (the exit status, ExecInspect, never comes) ends the step within
// the call limit, as the host's failure naming what did not answer, with
// the output kept; not after the step's time limit, nor never.
func TestExecEndsWhenTheDaemonStopsAnsweringAfterTheOutput(t *testing.T) {
	e := openHung(t, &hungDaemon{runsExecs: true, output: "step output\n"}, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // the step's time limit
	defer cancel()
	var out bytes.Buffer
	var res transport.Result
	start := time.Now()
	err := returnsWithin(t, 5*time.Second, "Exec", func() (err error) {
		res, err = e.Exec(ctx, "c", docker.ExecOptions{}, []string{"true"}, docker.ExecIO{Watched: true, Name: "step s", Stdout: &out})
		return err
	})
	var he *transport.HostError
	if !errors.As(err, &he) || he.Host != "h1" || he.Kind != docker.KindDockerUnavailable {
		t.Fatalf("error %T %v, want the host's docker-unavailable failure", err, err)
	}
	for _, want := range []string{"stopped answering", "ExecInspect", "step s", "300ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if out.String() != "step output\n" || string(res.Stdout) != "step output\n" || res.ExitCode != -1 {
		t.Errorf("output %q, result %q exit %d: the output was lost", out.String(), res.Stdout, res.ExitCode)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("gave up after %s, before the call limit", took)
	}
}

// A Ctrl-C while the daemon does not answer the exit status ends the step
// at once, as the interruption.
func TestExecInterruptedWhileTheDaemonDoesNotAnswer(t *testing.T) {
	d := &hungDaemon{runsExecs: true, output: "x\n"}
	e := openHung(t, d, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-d.hung // the exit status is asked for
		cancel()
	}()
	err := returnsWithin(t, 5*time.Second, "Exec", func() error {
		_, err := e.Exec(ctx, "c", docker.ExecOptions{}, []string{"true"}, docker.ExecIO{Watched: true, Name: "step s"})
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the interruption", err)
	}
}

// Every short API call is bounded (a daemon that answers nothing fails the
// host within the limit, naming the call) and honours cancellation.
func TestEveryCallHasADeadlineAndHonoursCancellation(t *testing.T) {
	calls := []struct {
		name string
		call func(ctx context.Context, e *Engine) error
	}{
		{"inspect", func(ctx context.Context, e *Engine) error { _, _, err := e.Inspect(ctx, "c"); return err }},
		{"image", func(ctx context.Context, e *Engine) error { _, err := e.ImageID(ctx, "img:1"); return err }},
		{"layers", func(ctx context.Context, e *Engine) error { _, err := e.ImageLayers(ctx); return err }},
		{"tag", func(ctx context.Context, e *Engine) error { return e.Tag(ctx, "a", "b") }},
		{"ps", func(ctx context.Context, e *Engine) error { _, err := e.PsByLabel(ctx, "k", "v"); return err }},
		{"start", func(ctx context.Context, e *Engine) error { _, err := e.Start(ctx, "c0ffee"); return err }},
		{"remove", func(ctx context.Context, e *Engine) error { _, err := e.Remove(ctx, "c0ffee"); return err }},
		{"mkdir", func(ctx context.Context, e *Engine) error { return e.MakeDir(ctx, "c", "/tmp/d", 0o700, nil) }},
		{"exec", func(ctx context.Context, e *Engine) error {
			_, err := e.Exec(ctx, "c", docker.ExecOptions{}, []string{"true"}, docker.ExecIO{})
			return err
		}},
		{"run", func(ctx context.Context, e *Engine) error {
			_, err := e.Run(ctx, docker.RunSpec{Name: "c", Image: "img:1"})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name+"/deadline", func(t *testing.T) {
			e := openHung(t, &hungDaemon{}, 200*time.Millisecond)
			err := returnsWithin(t, 5*time.Second, c.name, func() error { return c.call(context.Background(), e) })
			var he *transport.HostError
			if !errors.As(err, &he) || he.Host != "h1" || he.Kind != docker.KindDockerUnavailable || !strings.Contains(err.Error(), "stopped answering") {
				t.Fatalf("error %T %v, want the host's docker-unavailable failure", err, err)
			}
		})
		t.Run(c.name+"/cancel", func(t *testing.T) {
			d := &hungDaemon{}
			e := openHung(t, d, time.Hour)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-d.hung
				cancel()
			}()
			err := returnsWithin(t, 5*time.Second, c.name, func() error { return c.call(ctx, e) })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %T %v, want the interruption", err, err)
			}
		})
	}
}

// Once a call found the daemon not answering, the host's next calls fail
// at once with that reason instead of each waiting its own limit: a run
// whose daemon hung ends (and releases its lock) soon after.
func TestAHungDaemonIsNotAskedAgain(t *testing.T) {
	e := openHung(t, &hungDaemon{}, 200*time.Millisecond)
	if err := returnsWithin(t, 5*time.Second, "inspect", func() error { _, _, err := e.Inspect(context.Background(), "c"); return err }); err == nil {
		t.Fatal("a hung daemon answered")
	}
	start := time.Now()
	_, err := e.Remove(context.Background(), "c0ffee")
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("the next call waited %s", took)
	}
	if !strings.Contains(fmt.Sprint(err), "stopped answering") || !strings.Contains(fmt.Sprint(err), "(ContainerInspect c)") {
		t.Errorf("next call: %v, want the earlier reason", err)
	}
}
