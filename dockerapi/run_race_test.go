package dockerapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/docker"
)

// localUnix dials Unix sockets on this machine.
type localUnix struct{}

func (localUnix) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// slowCreateDaemon is a Docker API whose container create takes a while
// and, like dockerd, finishes even when the client has gone.
type slowCreateDaemon struct {
	mu      sync.Mutex
	created bool
	started bool
	release chan struct{}
}

func (d *slowCreateDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if answerHandshake(w, r) {
		return
	}
	switch p := r.URL.Path; {
	case strings.Contains(p, "/images/") && strings.HasSuffix(p, "/json"):
		json.NewEncoder(w).Encode(map[string]any{"Id": "sha256:" + strings.Repeat("a", 64)})
	case strings.HasSuffix(p, "/containers/create"):
		<-d.release // the daemon goes on whether or not the client waits
		d.mu.Lock()
		d.created = true
		d.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"Id": "c0ffee"})
	case strings.HasSuffix(p, "/start"):
		d.mu.Lock()
		d.started = true
		d.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// A run interrupted while the daemon creates the container returns only
// once the create is over, so that the caller's cleanup, which looks for
// the run's containers next, finds it; and it does not start it.
func TestRunInterruptedDuringCreateWaitsForIt(t *testing.T) {
	d := &slowCreateDaemon{release: make(chan struct{})}
	e := openFake(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel() // Ctrl-C while the create is in the daemon
		time.Sleep(300 * time.Millisecond)
		close(d.release)
	}()
	_, err := e.Run(ctx, docker.RunSpec{Name: "c", Image: "img:1"})
	d.mu.Lock()
	created, started := d.created, d.started
	d.mu.Unlock()
	if err == nil {
		t.Fatal("an interrupted run reported success")
	}
	if !created {
		t.Errorf("Run returned (%v) while the daemon was still creating the container: cleanup would look too early", err)
	}
	if started {
		t.Error("an interrupted run started the container")
	}
}

// answerHandshake sets a fake daemon's headers and answers the requests
// every client opens with (ping, version); false for any other request.
func answerHandshake(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Api-Version", "1.41")
	switch p := r.URL.Path; {
	case strings.HasSuffix(p, "/_ping"):
		w.Write([]byte("OK"))
	case strings.HasSuffix(p, "/version"):
		json.NewEncoder(w).Encode(map[string]string{"Version": "28.0.0", "ApiVersion": "1.41", "MinAPIVersion": "1.24"})
	default:
		return false
	}
	return true
}

// openFake serves a fake daemon on a real Unix socket and opens an engine
// on it; both are closed when the test ends.
func openFake(t *testing.T, daemon http.Handler) *Engine {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: daemon}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	e, _, err := Open(context.Background(), localUnix{}, "h1", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
