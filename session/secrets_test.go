package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
)

// syncBuffer is a bytes.Buffer several hosts' output may reach at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Issue 21 item 11: env values from the controller's environment, from a
// file, and literal values of secret-looking names, echoed by a step, are
// *** on the terminal, in the live view, the logs, the run record, the
// --json document, the HTML report and JUnit; so are they in a setup
// error.
func TestSecretsMaskedEverywhere(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	const fromEnv, fromFile, literal = "env-S3CRET-value", "file-S3CRET-value", "literal-S3CRET"
	secrets := []string{fromEnv, fromFile, literal}
	t.Setenv("CVS_TEST_REGISTRY_TOKEN", fromEnv)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db-password"), []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cluster.toml")
	text := fmt.Sprintf(`user = "root"
hosts = ["10.9.0.1", "10.9.0.2"]
[env]
REGISTRY_TOKEN = { env = "CVS_TEST_REGISTRY_TOKEN" }
API_KEY = %q
[container]
lifetime = "per_run"
image = %q
name = "cvs-t"
[container.env]
DB_PASSWORD = { file = "db-password" }
[suites.leak]
[[suites.leak.steps]]
name = "echo"
run = "echo $REGISTRY_TOKEN"
`, literal, testImage)
	cfg, r := loadRig(t, file, text)
	out := func(i int) func(string) (string, int) {
		return func(string) (string, int) {
			// Every secret, once alone on a line and once inside one.
			return fmt.Sprintf("%s\n%s\n%s\ntoken=%s;pw=%s;key=%s done\n", fromEnv, fromFile, literal, fromEnv, fromFile, literal), i
		}
	}
	r.hosts[0].Step, r.hosts[1].Step = out(0), out(3)
	var stdout, stderr, live syncBuffer
	var afterStep []string
	r.opts.Stdout, r.opts.Stderr = &stdout, &stderr
	r.opts.StepOutput = func(step, host string) (io.Writer, io.Writer) { return &live, &live }
	r.opts.AfterStep = func(_ Step, results []StepResult) {
		for _, res := range results {
			afterStep = append(afterStep, res.Stdout, res.Stderr, res.Error)
		}
	}
	st, _ := cfg.Suite("leak")
	rep, err := Run(context.Background(), cfg, st, false, r.opts)
	if err == nil || rep == nil || len(rep.Steps) != 2 {
		t.Fatalf("run: %v, report %+v", err, rep)
	}
	check := func(where, got string, masked bool) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Errorf("%s shows the secret %q:\n%s", where, s, got)
			}
		}
		if masked && !strings.Contains(got, "token=***;pw=***;key=*** done") {
			t.Errorf("%s does not show the masked line:\n%s", where, got)
		}
	}
	check("the terminal", stdout.String()+stderr.String(), true)
	check("the live view", live.String(), true)
	check("AfterStep's results", strings.Join(afterStep, "\n"), true)
	doc, _ := json.Marshal(rep)
	check("--json", string(doc), true)
	check("the error", err.Error(), false)

	var all strings.Builder
	filepath.WalkDir(rep.Record, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(&all, "== %s\n%s\n", p, b)
		}
		return nil
	})
	check("the record and logs on disk", all.String(), true)
	_, logs, err := RunLogs("", "", "")
	if err != nil || len(logs) != 2 {
		t.Fatalf("logs: %v %v", logs, err)
	}
	var html, junit strings.Builder
	if err := WriteHTML(&html, ""); err != nil {
		t.Fatal(err)
	}
	check("the HTML report", html.String(), false)
	if !strings.Contains(html.String(), "token=***;pw=***;key=***") {
		t.Errorf("the HTML report does not show the masked output:\n%s", html.String())
	}
	if err := WriteJUnit(&junit, ""); err != nil {
		t.Fatal(err)
	}
	check("JUnit", junit.String(), true)

	// A setup error quoting a secret (docker run's stderr) is masked in
	// the report, the returned error and the record.
	r.hosts[1].FailRun = "docker: invalid env file line DB_PASSWORD=" + fromFile
	rep, err = Run(context.Background(), cfg, st, false, r.opts)
	if err == nil || rep == nil || !strings.Contains(rep.Setup, "DB_PASSWORD=***") {
		t.Fatalf("setup failure: %v, setup %q", err, rep.Setup)
	}
	check("the setup error", err.Error(), false)
	doc, _ = json.Marshal(rep)
	check("--json of the failed setup", string(doc), false)
	rec, ferr := FindRun("")
	if ferr != nil {
		t.Fatal(ferr)
	}
	b, _ := json.Marshal(rec)
	check("the failed setup's record", string(b), false)
}

// cvs exec in the containers (whose environment holds [container.env])
// masks the secrets as a step's output does.
func TestExecMasksSecrets(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	for _, h := range r.hosts {
		r.persistentContainer(h, "running")
		h.Step = func(string) (string, int) { return "TOKEN=s3cret\n", 0 }
	}
	var stdout, stderr syncBuffer
	r.opts.Stdout, r.opts.Stderr = &stdout, &stderr
	rep, err := Exec(context.Background(), r.cfg, ExecRequest{Argv: []string{"env"}, Hosts: r.cfg.Hosts, Timeout: time.Minute, InContainer: true}, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(rep)
	for where, got := range map[string]string{"the terminal": stdout.String() + stderr.String(), "--json": string(doc)} {
		if strings.Contains(got, "s3cret") || !strings.Contains(got, "TOKEN=***") {
			t.Errorf("%s:\n%s", where, got)
		}
	}
}

// A step's result keeps only the end of its output (suite.TailBytes); when
// that cut falls inside a secret, the kept start is the secret's end, which
// must be masked too (found by review: one long line holding a token).
func TestSecretCutAtTheResultsTailIsMasked(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	const secret = "tail-S3CRET-0123456789ab"
	t.Setenv("CVS_TEST_TOKEN", secret)
	dir := t.TempDir()
	file := filepath.Join(dir, "cluster.toml")
	text := fmt.Sprintf(`user = "root"
hosts = ["10.9.0.1"]
[env]
TOKEN = { env = "CVS_TEST_TOKEN" }
[container]
lifetime = "per_run"
image = %q
name = "cvs-t"
[suites.long]
[[suites.long.steps]]
name = "trace"
run = "echo a long line"
`, testImage)
	cfg, r := loadRig(t, file, text)
	line := strings.Repeat("A", 200) + secret + strings.Repeat("x", 4096-10) + "\n"
	r.hosts[0].Step = func(string) (string, int) { return line, 0 }
	r.opts.Stdout, r.opts.Stderr = io.Discard, io.Discard
	st, _ := cfg.Suite("long")
	rep, err := Run(context.Background(), cfg, st, false, r.opts)
	if err != nil || rep == nil || len(rep.Steps) != 1 {
		t.Fatalf("run: %v, report %+v", err, rep)
	}
	got := rep.Steps[0].Stdout
	if strings.Contains(got, secret[len(secret)-8:]) || !strings.HasPrefix(got, "***") {
		t.Errorf("the kept tail starts inside the secret and shows its end: %.40q...", got)
	}
}

// loadRig writes text as the cluster file file, loads it (env values from
// this process's environment and files) and builds a fake-host rig on it.
func loadRig(t *testing.T, file, text string) (*cluster.Config, *rig) {
	t.Helper()
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Container.Pin = cluster.PinOff
	return cfg, rigOf(cfg)
}
