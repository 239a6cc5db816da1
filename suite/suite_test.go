package suite

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/internal/fakehost"
	"github.com/cvs-tool/cvs/report"
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
	SummaryTable(&b, []Result{{Step: "install", Host: "h1", Duration: 1500 * time.Millisecond},
		{Step: "install", Host: "h2", ExitCode: -1, Error: "timed out after 1m0s (step timeout); the step was killed"}})
	out := b.String()
	for _, want := range []string{"STEP", "install  h1", "1.5s", "-1 (timed out"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// Issue 23: the summary of 500 hosts × 3 steps is a line per step, the
// failing hosts named (folded) on it and each given a line of its own
// with its exit and last output line; no passing host is listed.
func TestSummaryFoldsManyHosts(t *testing.T) {
	var results []Result
	for _, step := range []string{"install", "test", "collect"} {
		for i := 1; i <= 500; i++ {
			r := Result{Step: step, Host: fmt.Sprintf("node%03d", i), Duration: time.Second}
			if step == "test" && (i == 4 || i == 11) {
				r.ExitCode, r.Stderr = 1, "checking\nE: ECC errors on GPU 3\n"
			}
			if step == "test" && i == 117 {
				r.Duration = 12100 * time.Millisecond
			}
			results = append(results, r)
		}
	}
	var b strings.Builder
	Summary(&b, results)
	out := b.String()
	want := []string{
		"install  ok 500 · slowest 1s node001",
		"test     ok 498 · failed 2: node[004,011] · slowest 12.1s node117",
		"  node004  exit 1  1s  E: ECC errors on GPU 3",
		"  node011  exit 1  1s  E: ECC errors on GPU 3",
		"collect  ok 500 · slowest 1s node001",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("summary:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}

	// Every host failing: the step's line, then report.MaxRows of them
	// and how many more.
	for i := range results {
		results[i].ExitCode = 2
	}
	b.Reset()
	Summary(&b, results)
	out = b.String()
	if lines := strings.Count(out, "\n"); lines > 3*(report.MaxRows+2) {
		t.Errorf("%d lines for 3 steps:\n%s", lines, out)
	}
	if !strings.Contains(out, "install  ok 0 · failed 500: node[001-500] · slowest 1s node001\n  node001  exit 2  1s") ||
		strings.Count(out, "+460 more (all in --json)\n") != 3 || strings.Contains(out, "node041  exit") {
		t.Errorf("every host failing:\n%s", out)
	}
}

// Step scripts and [env] values travel as uploaded files, never in a
// command line; the scripts are removed from the containers afterwards,
// and the host folder they passed through too.
func TestRunKeepsScriptsAndEnvOutOfCommandLines(t *testing.T) {
	hosts := map[string]*fakehost.Host{}
	cfg := &cluster.Config{Hosts: []cluster.Host{{Name: "h1", Addr: "10.0.0.1"}, {Name: "h2", Addr: "10.0.0.2"}},
		Env: map[string]string{"API_TOKEN": "tok-s3cret"}, Container: cluster.Container{Name: "c", SSHDPort: 2224}}
	var mu sync.Mutex
	ran := map[string][]string{}
	for _, h := range cfg.Hosts {
		fh := fakehost.New(h.Name, "i:1", "sha256:1")
		fh.AddContainer(fakehost.Container{Name: "c", Image: "sha256:1", State: "running"})
		fh.Step = func(script string) (string, int) {
			mu.Lock()
			defer mu.Unlock()
			ran[h.Name] = append(ran[h.Name], script)
			return "", 0
		}
		hosts[h.Name] = fh
	}
	f := fleet.NewWithDial(func(_ context.Context, h cluster.Host) (transport.Conn, error) { return hosts[h.Name], nil }, 4)
	r := &Runner{Fleet: f, Config: cfg, RunID: "r1"}
	results, err := r.Run(context.Background(), cluster.Suite{Name: "s", Steps: []cluster.Step{
		{Name: "one", Run: "echo secret-body-1", On: cluster.OnAll, Timeout: time.Minute},
		{Name: "two", Run: "echo secret-body-2", On: cluster.OnHead, Timeout: time.Minute},
	}})
	if err != nil || len(results) != 3 {
		t.Fatalf("results %d, err %v", len(results), err)
	}
	for name, h := range hosts {
		all := strings.Join(h.Lines(), "\n")
		for _, secret := range []string{"tok-s3cret", "secret-body"} {
			if strings.Contains(all, secret) {
				t.Errorf("%s: %q appears in a command line:\n%s", name, secret, all)
			}
		}
		script := ran[name][0]
		if !strings.Contains(script, "export API_TOKEN=tok-s3cret") || !strings.Contains(script, "export CVS_HOSTS='10.0.0.1 10.0.0.2'") || !strings.Contains(script, "echo secret-body-1") {
			t.Errorf("%s: script run:\n%s", name, script)
		}
		for p := range h.Uploads() {
			if !h.Removed(p) {
				t.Errorf("%s: %s not removed from the host", name, p)
			}
		}
		if c, _ := h.Container("c"); len(c.Files) != 0 {
			t.Errorf("%s: scripts left in the container: %v", name, c.Files)
		}
		// Removed as root: by the last step where it runs as root (h1
		// runs the head-only last step), else by a docker exec after the
		// suite (h2).
		byStep := strings.Contains(all, `cvs-step /tmp/cvs-r1/step1.sh /tmp/cvs-r1'`)
		byExec := strings.Contains(all, "docker exec -u 0 c rm -rf -- /tmp/cvs-r1")
		if (name == "h1") != byStep || (name == "h2") != byExec {
			t.Errorf("%s: scripts not removed as root (by the last step %v, by exec %v):\n%s", name, byStep, byExec, all)
		}
	}
	if len(ran["h1"]) != 2 || len(ran["h2"]) != 1 {
		t.Errorf("steps run: h1 %d, h2 %d; the head-only step runs on h1 only", len(ran["h1"]), len(ran["h2"]))
	}
}

// A run keeps, of each step's output on each host, only what the summary
// and the errors show (a few KiB: the last lines), not the up to 2 MiB a
// command's result holds; the whole output is in the run's logs (issue 21
// item 10: 500 hosts × 10 verbose steps kept 10 GiB). Heap measured after
// the run, results still held, against a bound far above the tails and
// far below the outputs.
func TestRunKeepsOnlyOutputTails(t *testing.T) {
	const nHosts, nSteps, outSize = 64, 4, 256 << 10
	line := strings.Repeat("x", 99) + "\n"
	out := strings.Repeat(line, outSize/len(line)) + "the last line\n"
	cfg := &cluster.Config{Container: cluster.Container{Name: "c", SSHDPort: 2224}}
	hosts := map[string]*fakehost.Host{}
	for i := range nHosts {
		h := cluster.Host{Name: fmt.Sprintf("h%02d", i), Addr: fmt.Sprintf("10.0.0.%d", i+1)}
		cfg.Hosts = append(cfg.Hosts, h)
		fh := fakehost.New(h.Name, "i:1", "sha256:1")
		fh.AddContainer(fakehost.Container{Name: "c", Image: "sha256:1", State: "running"})
		fh.Step = func(string) (string, int) { return out, 0 }
		hosts[h.Name] = fh
	}
	var steps []cluster.Step
	for i := range nSteps {
		steps = append(steps, cluster.Step{Name: fmt.Sprintf("s%d", i), Run: "verbose", On: cluster.OnAll, Timeout: time.Minute})
	}
	f := fleet.NewWithDial(func(_ context.Context, h cluster.Host) (transport.Conn, error) { return hosts[h.Name], nil }, 8)
	r := &Runner{Fleet: f, Config: cfg, RunID: "r1"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	results, err := r.Run(context.Background(), cluster.Suite{Name: "s", Steps: steps})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if err != nil || len(results) != nHosts*nSteps {
		t.Fatalf("results %d, err %v", len(results), err)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if limit := int64(nHosts * nSteps * 64 << 10); grew > limit {
		t.Errorf("the heap grew by %d MiB for %d results (bound %d MiB): outputs are kept whole", grew>>20, len(results), limit>>20)
	}
	for _, res := range results {
		if !strings.HasSuffix(res.Stdout, "the last line\n") || len(res.Stdout) > 8<<10 {
			t.Fatalf("%s on %s keeps %d bytes, ending %q", res.Step, res.Host, len(res.Stdout), res.Stdout[max(0, len(res.Stdout)-20):])
		}
	}
	runtime.KeepAlive(results)
}
