package suite

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/transport"
)

func TestScriptExportsEnvironment(t *testing.T) {
	s := Script(map[string]string{"A": "cluster", "B": "it's b"}, cluster.Step{Run: `echo "$A|$B|$C"`, Env: map[string]string{"A": "step", "C": "$HOME"}})
	out, err := exec.Command("bash", "-eo", "pipefail", "-c", s).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "step|it's b|$HOME\n" {
		t.Errorf("got %q from:\n%s", out, s)
	}
}

func TestSummaryTable(t *testing.T) {
	var b strings.Builder
	Summary(&b, []Result{{Step: "install", Host: "h1", Duration: 1500 * time.Millisecond},
		{Step: "install", Host: "h2", ExitCode: -1, Error: "timed out after 1m0s (step timeout); the step was killed"}})
	out := b.String()
	for _, want := range []string{"STEP", "install  h1", "1.5s", "-1 (timed out"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// recordingConn accepts every command and records it.
type recordingConn struct {
	mu      sync.Mutex
	lines   []string
	uploads map[string][]byte
}

func (c *recordingConn) Run(_ context.Context, cmd transport.Command) (transport.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, cmd.Line)
	if strings.HasPrefix(cmd.Line, "mktemp ") {
		return transport.Result{Stdout: []byte("/tmp/cvs-steps.Xy12345678\n")}, nil
	}
	return transport.Result{}, nil
}

func (c *recordingConn) Upload(_ context.Context, p string, r io.Reader, _ os.FileMode) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uploads[p] = data
	return nil
}
func (c *recordingConn) Alive() bool  { return true }
func (c *recordingConn) Close() error { return nil }

// Step scripts and [env] values travel as uploaded files, never in a
// command line; the scripts are removed from the containers afterwards.
func TestRunKeepsScriptsAndEnvOutOfCommandLines(t *testing.T) {
	conns := map[string]*recordingConn{}
	cfg := &cluster.Config{Hosts: []cluster.Host{{Name: "h1", Addr: "10.0.0.1"}, {Name: "h2", Addr: "10.0.0.2"}},
		Env: map[string]string{"API_TOKEN": "tok-s3cret"}, Container: cluster.Container{Name: "c", SSHDPort: 2224}}
	for _, h := range cfg.Hosts {
		conns[h.Name] = &recordingConn{uploads: map[string][]byte{}}
	}
	f := fleet.NewWithDial(func(_ context.Context, h cluster.Host) (transport.Conn, error) { return conns[h.Name], nil }, 4)
	r := &Runner{Fleet: f, Config: cfg, RunID: "r1"}
	results, err := r.Run(context.Background(), cluster.Suite{Name: "s", Steps: []cluster.Step{
		{Name: "one", Run: "echo secret-body-1", On: cluster.OnAll, Timeout: time.Minute},
		{Name: "two", Run: "echo secret-body-2", On: cluster.OnHead, Timeout: time.Minute},
	}})
	if err != nil || len(results) != 3 {
		t.Fatalf("results %d, err %v", len(results), err)
	}
	for name, c := range conns {
		all := strings.Join(c.lines, "\n")
		for _, secret := range []string{"tok-s3cret", "secret-body"} {
			if strings.Contains(all, secret) {
				t.Errorf("%s: %q appears in a command line:\n%s", name, secret, all)
			}
		}
		script := string(c.uploads["/tmp/cvs-steps.Xy12345678/step0.sh"])
		if !strings.Contains(script, "export API_TOKEN=tok-s3cret") || !strings.Contains(script, "export CVS_HOSTS='10.0.0.1 10.0.0.2'") || !strings.Contains(script, "echo secret-body-1") {
			t.Errorf("%s: uploaded script:\n%s", name, script)
		}
		if !strings.Contains(all, "docker cp /tmp/cvs-steps.Xy12345678/step1.sh c:/tmp/cvs-r1-step1.sh") ||
			!strings.Contains(all, "docker exec -u 0 c rm -f /tmp/cvs-r1-step0.sh /tmp/cvs-r1-step1.sh") ||
			!strings.Contains(all, "rm -rf -- /tmp/cvs-steps.Xy12345678") {
			t.Errorf("%s: staging or cleanup commands missing:\n%s", name, all)
		}
	}
	if strings.Contains(strings.Join(conns["h2"].lines, "\n"), "cvs-r1-step1.sh'") {
		t.Error("the head-only step ran on h2")
	}
}
