package session

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/internal/fakehost"
	"github.com/cvs-tool/cvs/internal/golden"
	"github.com/cvs-tool/cvs/internal/imagetest"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/provision"
	"github.com/cvs-tool/cvs/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	testImage   = "reg.example:5000/w:1"
	testImageID = "sha256:9c1d5e2a7b3f00000000000000000000000000000000000000000000000000aa"
)

// rig is a cluster of fake hosts and its cluster file.
type rig struct {
	cfg   *cluster.Config
	hosts []*fakehost.Host
	opts  Options
}

// newRig writes a cluster file for n hosts with lifetime lt and loads it;
// the sshd keys go to a temporary state folder.
func newRig(t *testing.T, n int, lt cluster.Lifetime) *rig {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%q", fmt.Sprintf("10.9.0.%d", i+1))
	}
	file := filepath.Join(dir, "cluster.toml")
	text := fmt.Sprintf(`user = "root"
hosts = [%s]
max_parallel = 4

[env]
TOKEN = "s3cret"

[container]
lifetime = %q
image = %q
name = "cvs-t"

[suites.install]
[[suites.install.steps]]
name = "tools"
run = "echo installed"

[suites.test]
[[suites.test.steps]]
name = "check"
run = "echo checked"
[[suites.test.steps]]
name = "mpi"
run = "echo from head"
on = "head"
`, strings.Join(names, ", "), lt, testImage)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return rigOf(cfg)
}

// rigOf is a rig of fake hosts for a loaded cluster file.
func rigOf(cfg *cluster.Config) *rig {
	// No registry here: TestPinning gives itself one.
	cfg.Container.Pin = cluster.PinOff
	r := &rig{cfg: cfg}
	byName := map[string]*fakehost.Host{}
	for _, h := range cfg.Hosts {
		fh := fakehost.New(h.Name, testImage, testImageID)
		r.hosts = append(r.hosts, fh)
		byName[h.Name] = fh
	}
	r.opts = Options{Version: "test", Dial: func(_ context.Context, h cluster.Host) (transport.Conn, error) {
		return byName[h.Name], nil
	}}
	return r
}

func (r *rig) suite(t *testing.T, name string) cluster.Suite {
	t.Helper()
	st, ok := r.cfg.Suite(name)
	if !ok {
		t.Fatalf("no suite %s", name)
	}
	return st
}

// launches counts docker run commands sent to every host.
func (r *rig) launches() int {
	n := 0
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if strings.HasPrefix(l, "docker run ") {
				n++
			}
		}
	}
	return n
}

// persistentContainer puts a persistent container of this cluster on h.
func (r *rig) persistentContainer(h *fakehost.Host, state string) {
	h.AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, Ref: testImage, State: state,
		StartedAt: "2026-11-30T10:00:00Z", SSHD: state == "running", Provisioned: 1,
		Labels: map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File,
			lifetime.LabelLifetime: "persistent", lifetime.LabelRunID: "earlier"}})
}

func TestPersistentInstallThenTestAttaches(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePersistent)
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if r.launches() != 3 {
		t.Fatalf("install launched %d containers, want 3", r.launches())
	}
	ids := map[string]string{}
	for _, h := range r.hosts {
		c, ok := h.Container("cvs-t")
		if !ok || c.State != "running" || c.Provisioned != 1 || !c.SSHD || c.Labels[lifetime.LabelLifetime] != "persistent" {
			t.Fatalf("%s after install: %+v (found %v)", h.Name, c, ok)
		}
		ids[h.Name] = c.ID
		if len(c.Files) != 0 {
			t.Errorf("%s: step scripts left in the container: %v", h.Name, c.Files)
		}
	}
	if len(rep.Steps) != 3 || rep.Steps[0].Stdout != "" && rep.Steps[0].ExitCode != 0 {
		t.Errorf("steps = %+v", rep.Steps)
	}
	for _, st := range rep.Stages {
		if st.Status != StageOK {
			t.Errorf("stage %s: %s %s", st.Name, st.Status, st.Error)
		}
	}

	rep, err = Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if err != nil {
		t.Fatalf("test: %v", err)
	}
	if r.launches() != 3 {
		t.Errorf("test launched again: %d docker runs in all", r.launches())
	}
	for _, h := range r.hosts {
		c, _ := h.Container("cvs-t")
		if c.ID != ids[h.Name] || c.Provisioned != 1 {
			t.Errorf("%s: attach changed the container: %+v", h.Name, c)
		}
	}
	for _, hp := range rep.Plan.Hosts {
		if hp.Action != lifetime.Attach {
			t.Errorf("%s: action %s, want attach", hp.Host, hp.Action)
		}
	}
	// check on 3 hosts, mpi on the head only.
	if len(rep.Steps) != 4 || rep.Steps[3].Step != "mpi" || rep.Steps[3].Host != r.cfg.Head().Name {
		t.Errorf("steps = %+v", rep.Steps)
	}
}

// The step script carries [env] values: uploaded 0600 into a private
// folder that is removed, never in a command line.
func TestStepSecretsNeverInCommandLines(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	var mu sync.Mutex
	var scripts []string
	for _, h := range r.hosts {
		h.Step = func(script string) (string, int) {
			mu.Lock()
			defer mu.Unlock()
			scripts = append(scripts, script)
			return "ok\n", 0
		}
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	if len(scripts) != 2 || !strings.Contains(scripts[0], "export TOKEN=s3cret") {
		t.Fatalf("scripts run: %q", scripts)
	}
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if strings.Contains(l, "s3cret") {
				t.Errorf("%s: secret in a command line: %s", h.Name, l)
			}
		}
		for p := range h.Uploads() {
			if !h.Removed(p) {
				t.Errorf("%s: uploaded %s was not removed", h.Name, p)
			}
		}
	}
}

func TestPartialPersistenceRefusesWithoutChange(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePersistent)
	r.persistentContainer(r.hosts[0], "running")
	r.persistentContainer(r.hosts[1], "running")
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if exitcode.Of(err) != exitcode.Refused {
		t.Fatalf("exit %d (%v), want 5", exitcode.Of(err), err)
	}
	if rep.Plan.Verdict != lifetime.Refuse || r.launches() != 0 || r.hosts[2].Containers() != 0 {
		t.Errorf("verdict %s, %d launches", rep.Plan.Verdict, r.launches())
	}
	for _, st := range rep.Stages {
		if st.Status != StagePlanned {
			t.Errorf("stage %s ran: %s", st.Name, st.Status)
		}
	}
}

func TestUnreachableHostIsUnknownNeverAbsent(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	dial := r.opts.Dial
	r.opts.Dial = func(ctx context.Context, h cluster.Host) (transport.Conn, error) {
		if h.Name == "10.9.0.2" {
			return nil, &transport.HostError{Host: h.Name, Kind: transport.KindUnreachable, Err: errors.New("no route to host")}
		}
		return dial(ctx, h)
	}
	rep, err := Status(context.Background(), r.cfg, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	f := rep.Hosts[1]
	if f.Container.State != "unknown" || f.Reachable || f.ErrorKind != "unreachable" || rep.Summary.Problems != 1 {
		t.Errorf("facts = %+v, summary %+v", f, rep.Summary)
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); exitcode.Of(err) != exitcode.Preflight || r.launches() != 0 {
		t.Errorf("run over an unreachable host: exit %d, %d launches", exitcode.Of(err), r.launches())
	}
}

func TestSetupFailureRollsBackEveryLaunch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(r *rig)
		stage string
	}{
		{"provisioning", func(r *rig) { r.hosts[1].FailProvision = "E: Unable to locate package foo" }, "provisioning"},
		{"sshd", func(r *rig) { r.hosts[2].FailSSHD = "sshd: bad config" }, "sshd"},
		// The registry served different content to different hosts.
		{"image skew", func(r *rig) {
			for i, h := range r.hosts {
				delete(h.Images, testImage)
				h.PullAs = testImageID
				if i == 0 {
					h.PullAs = "sha256:other"
				}
			}
		}, "image check"},
		{"launch", func(r *rig) { r.hosts[0].FailRun = "docker: Error response from daemon: pull access denied" }, "launch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 3, cluster.LifetimePersistent)
			tc.fault(r)
			rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
			if exitcode.Of(err) != exitcode.Partial {
				t.Fatalf("exit %d (%v), want 4", exitcode.Of(err), err)
			}
			var se *StageError
			if !errors.As(err, &se) || !strings.HasPrefix(se.Stage, tc.stage) || se.Cleanup == nil || !se.Cleanup.OK() {
				t.Fatalf("error %#v", err)
			}
			if !strings.Contains(err.Error(), "removed the containers this run launched") {
				t.Errorf("error does not say what was rolled back:\n%v", err)
			}
			for _, h := range r.hosts {
				if n := h.Containers(); n != 0 {
					t.Errorf("%s: %d containers left after rollback", h.Name, n)
				}
			}
			if len(rep.Steps) != 0 || rep.Setup == "" {
				t.Errorf("steps ran after a failed setup, or no setup_error: %+v", rep)
			}
			last := rep.Stages[len(rep.Stages)-2]
			if last.Name != "teardown" || last.Status != StageOK {
				t.Errorf("teardown stage: %+v", last)
			}
			if rep.Record == "" {
				t.Error("no record of the failed run")
			}
		})
	}
}

func TestRollbackThatFailsIsExit6(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[0].FailProvision = "boom"
	r.hosts[1].FailRm = "Error response from daemon: removal failed"
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Cleanup || !strings.Contains(err.Error(), "LEFT BEHIND on 10.9.0.2") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
}

func TestPerRunTearsDownAfterFailedStep(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[1].Step = func(string) (string, int) { return "FAIL\n", 3 }
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Failed || !strings.Contains(err.Error(), "tools on 10.9.0.2 (exit 3)") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if !strings.Contains(rep.Teardown, "removed the containers this run launched on: 10.9.0.[1-2]") {
		t.Errorf("teardown = %q", rep.Teardown)
	}
	for _, h := range r.hosts {
		if h.Containers() != 0 {
			t.Errorf("%s: per_run container left", h.Name)
		}
	}
}

// Ctrl-C during a step: the step stops, per_run still removes everything,
// exit 130.
func TestInterruptDuringStepStillTearsDown(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, h := range r.hosts {
		h.Step = func(string) (string, int) { cancel(); return "", 0 }
	}
	var left string
	r.opts.OnOpen = func(s *Session) {
		r.hosts[0].OnCommand = func(argv []string) {
			if len(argv) > 1 && argv[0] == "docker" && argv[1] == "cp" {
				left = s.LeftBehind()
			}
		}
	}
	_, err := Run(ctx, r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Interrupted {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	for _, h := range r.hosts {
		if h.Containers() != 0 {
			t.Errorf("%s: container left after an interrupted per_run", h.Name)
		}
	}
	if !strings.Contains(left, "LEFT on 10.9.0.[1-2]") {
		t.Errorf("LeftBehind during the run = %q", left)
	}
}

func TestUpColdStartsAndRestarts(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	if _, err := Up(context.Background(), r.cfg, UpOptions{Restart: false, DryRun: false}, r.opts); err != nil {
		t.Fatal(err)
	}
	for _, h := range r.hosts {
		if c, ok := h.Container("cvs-t"); !ok || c.Provisioned != 1 || !c.SSHD {
			t.Fatalf("%s after up: %+v", h.Name, c)
		}
	}

	r = newRig(t, 2, cluster.LifetimePersistent)
	for _, h := range r.hosts {
		r.persistentContainer(h, "exited")
	}
	if _, err := Up(context.Background(), r.cfg, UpOptions{Restart: false, DryRun: false}, r.opts); exitcode.Of(err) != exitcode.Refused {
		t.Fatalf("up without --restart on stopped containers: exit %d (%v)", exitcode.Of(err), err)
	}
	if _, err := Up(context.Background(), r.cfg, UpOptions{Restart: true, DryRun: false}, r.opts); err != nil {
		t.Fatalf("up --restart: %v", err)
	}
	for _, h := range r.hosts {
		c, _ := h.Container("cvs-t")
		if c.State != "running" || c.Provisioned != 1 {
			t.Errorf("%s after up --restart: %+v (must be started, never relaunched or reprovisioned)", h.Name, c)
		}
	}
	if r.launches() != 0 {
		t.Errorf("up --restart launched %d containers", r.launches())
	}

	r = newRig(t, 1, cluster.LifetimePerRun)
	if _, err := Up(context.Background(), r.cfg, UpOptions{Restart: false, DryRun: false}, r.opts); exitcode.Of(err) != exitcode.Usage {
		t.Errorf("up on per_run: exit %d", exitcode.Of(err))
	}
}

func TestDownRemovesOnlyWhatCvsLaunched(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePerRun)
	r.hosts[0].AddContainer(fakehost.Container{Name: "cvs-t", State: "running", Image: testImageID,
		Labels: map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File, lifetime.LabelLifetime: "per_run"}})
	r.hosts[1].AddContainer(fakehost.Container{Name: "cvs-t", State: "running", Image: testImageID})
	r.persistentContainer(r.hosts[2], "running")
	rep, err := Down(context.Background(), r.cfg, false, r.opts)
	if exitcode.Of(err) != exitcode.Refused {
		t.Fatalf("exit %d (%v), want 5 (containers left alone)", exitcode.Of(err), err)
	}
	if strings.Join(rep.Removed, ",") != "10.9.0.1" || len(rep.LeftAlone) != 2 ||
		r.hosts[0].Containers() != 0 || r.hosts[1].Containers() != 1 || r.hosts[2].Containers() != 1 {
		t.Errorf("down: %+v", rep)
	}
	rep, err = Down(context.Background(), r.cfg, true, r.opts)
	if r.hosts[2].Containers() != 0 || r.hosts[1].Containers() != 1 || exitcode.Of(err) != exitcode.Refused {
		t.Errorf("down --force: %+v, %v", rep, err)
	}

	r = newRig(t, 1, cluster.LifetimePersistent)
	r.persistentContainer(r.hosts[0], "running")
	if _, err := Down(context.Background(), r.cfg, false, r.opts); exitcode.Of(err) != exitcode.Refused || r.hosts[0].Containers() != 1 {
		t.Errorf("down on persistent without --force: %v", err)
	}
}

// A host whose cluster lock was lost after it was taken (another cvs may
// hold it now) keeps its container: down changes only hosts it holds.
func TestDownLeavesAHostWhoseLockWasLost(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	for _, h := range r.hosts {
		h.AddContainer(fakehost.Container{Name: "cvs-t", State: "running", Image: testImageID,
			Labels: map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File, lifetime.LabelLifetime: "per_run"}})
	}
	lost := r.hosts[0]
	lost.OnProbe = func() {
		lost.DropLock()
		time.Sleep(100 * time.Millisecond) // the holder notices
	}
	rep, err := Down(context.Background(), r.cfg, false, r.opts)
	if err == nil || lost.Containers() != 1 {
		t.Fatalf("down removed the container of a host whose lock was lost: %+v, %v", rep, err)
	}
	if !strings.Contains(rep.Failed[lost.Name], "lock on this host was lost") || r.hosts[1].Containers() != 0 {
		t.Errorf("down: %+v", rep)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), true, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if !strings.Contains(l, "@@cvs-probe@@") {
				t.Errorf("%s: dry run sent more than the probe: %s", h.Name, l)
			}
		}
	}
	var names []string
	for _, st := range rep.Stages {
		names = append(names, fmt.Sprintf("%s(%d)", st.Name, len(st.Hosts)))
	}
	want := `push the image(0) launch(2) provisioning (setup_script)(2) sshd(2) image check after launch (every host must run the same image ID)(2) suite "install"(2) teardown(2) record(1)`
	if got := strings.Join(names, " "); got != want {
		t.Errorf("stages:\n got %s\nwant %s", got, want)
	}
}

var (
	reTemp     = regexp.MustCompile(`/tmp/[^"]*/cluster\.toml`)
	reDuration = regexp.MustCompile(`"duration_ms": \d+`)
	reTime     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	reRunID    = regexp.MustCompile(`"cvs\.run-id": "[0-9a-f]{16}"`)
	reRecord   = regexp.MustCompile(`"record": "[^"]*"`)
	reLog      = regexp.MustCompile(`"log": "[^"]*"`)
	reSkew     = regexp.MustCompile(`"clock_skew_s": [-0-9.e+]+`)
)

// checkJSON compares a document with its golden file, with the parts that
// change from run to run (paths, durations, times, run IDs) masked.
func checkJSON(t *testing.T, name string, doc any) {
	t.Helper()
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s := reTemp.ReplaceAllString(string(b), "/TMP/cluster.toml")
	s = reDuration.ReplaceAllString(s, `"duration_ms": 0`)
	s = reTime.ReplaceAllString(s, "TIME")
	s = reRunID.ReplaceAllString(s, `"cvs.run-id": "RUNID"`)
	s = reRecord.ReplaceAllString(s, `"record": "RECORD"`)
	s = reLog.ReplaceAllString(s, `"log": "LOG"`)
	s = reSkew.ReplaceAllString(s, `"clock_skew_s": 0`)
	golden.Check(t, name, []byte(s+"\n"))
}

// The JSON documents of status, run, up, down and exec are a promise in
// the README: their shape is pinned here.
func TestJSONDocumentsGolden(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	r.hosts[1].Step = func(string) (string, int) { return "bad\n", 2 }
	rep, _ := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	rep.ExitCode = 1
	checkJSON(t, "run.json", rep)

	st, err := Status(context.Background(), r.cfg, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, "status.json", st)

	up, err := Up(context.Background(), r.cfg, UpOptions{Restart: false, DryRun: true}, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, "up-dry-run.json", up)

	ex, err := Exec(context.Background(), r.cfg, ExecRequest{Hosts: r.cfg.Hosts, Argv: []string{"echo", "hi there"}, InContainer: true, Timeout: 1e9}, r.opts)
	if exitcode.Of(err) != exitcode.Failed {
		t.Errorf("exec: %v", err)
	}
	checkJSON(t, "exec.json", ex)

	down, err := Down(context.Background(), r.cfg, true, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, "down.json", down)
}

// The connection holding one host's lock drops during a step: no further
// step runs there, and the run says which host (exit 4).
func TestLostLockStopsChangesOnThatHost(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	for _, h := range r.hosts {
		r.persistentContainer(h, "running")
	}
	head := r.hosts[0]
	var once sync.Once
	ranMPI := false
	head.Step = func(script string) (string, int) {
		if strings.Contains(script, "from head") {
			ranMPI = true
		}
		once.Do(func() {
			head.DropLock()
			time.Sleep(100 * time.Millisecond) // the holder notices
		})
		return "", 0
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if exitcode.Of(err) != exitcode.Partial || !strings.Contains(err.Error(), "mpi on 10.9.0.1") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if ranMPI {
		t.Error("a step ran on a host whose lock was lost")
	}
	last := rep.Steps[len(rep.Steps)-1]
	if !strings.Contains(last.Error, "cluster lock on this host was lost") {
		t.Errorf("step result: %+v", last)
	}
}

// Step scripts carry [env] values: in the container they are 0600, owned
// by the user the step runs as, in a folder only root can write, and
// removed (as root) after the run (issue 9, item 5). Steps run as the
// suite's user when it names one (item 6).
func TestStepScriptsArePrivateToTheStepUser(t *testing.T) {
	r := newRig(t, 1, cluster.LifetimePersistent)
	r.persistentContainer(r.hosts[0], "running")
	st := r.suite(t, "test")
	st.User = "app"
	for i := range st.Steps {
		st.Steps[i].User = "app"
	}
	h := r.hosts[0]
	var seen []fakehost.File
	h.Step = func(script string) (string, int) {
		c, _ := h.Container("cvs-t")
		for p, f := range c.Meta {
			if strings.HasSuffix(p, ".sh") {
				seen = append(seen, f)
			}
		}
		return "", 0
	}
	if _, err := Run(context.Background(), r.cfg, st, false, r.opts); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("no step script seen in the container")
	}
	for _, f := range seen {
		if f.Mode != 0o600 || f.Owner != "app" {
			t.Errorf("step script in the container: mode %o owner %q, want 0600 app", f.Mode, f.Owner)
		}
	}
	runs := 0
	for _, l := range h.Lines() {
		if strings.Contains(l, "bash -eo pipefail") {
			runs++
			if !strings.Contains(l, "docker exec -i -u app cvs-t") {
				t.Errorf("step not run as app: %s", l)
			}
		}
	}
	if runs != 2 {
		t.Errorf("%d step runs", runs)
	}
	if c, _ := h.Container("cvs-t"); len(c.Files) != 0 || len(c.Meta) != 0 {
		t.Errorf("left in the container: %v", c.Files)
	}
}

// A cold start on an image whose USER is not root: the step scripts belong
// to that user (found on the container this run launched).
func TestStepScriptsBelongToTheImageUserOnColdStart(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	for _, h := range r.hosts {
		h.ImageUser = "nobody"
		h.Step = func(string) (string, int) {
			c, _ := h.Container("cvs-t")
			for p, f := range c.Meta {
				if strings.HasSuffix(p, ".sh") && (f.Owner != "nobody" || f.Mode != 0o600) {
					return fmt.Sprintf("%s: %s %o\n", p, f.Owner, f.Mode), 1
				}
			}
			return "", 0
		}
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
}

// Issue 9 item 16: setup_script = "none" switches provisioning off.
func TestSetupScriptNone(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	r.cfg.Container.SetupScript = cluster.SetupNone
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range r.hosts {
		if c, _ := h.Container("cvs-t"); c.Provisioned != 0 || !c.SSHD {
			t.Errorf("%s: provisioned %d times, sshd %v", h.Name, c.Provisioned, c.SSHD)
		}
	}
	if st := rep.Stages[2]; !strings.HasPrefix(st.Name, "provisioning") || len(st.Hosts) != 0 {
		t.Errorf("provisioning stage: %+v", st)
	}
}

// Issue 9 item 15: docker run created the container and failed, and its
// removal failed too: the run says what is left where (exit 6).
func TestFailedLaunchLeftBehindIsExit6(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[1].FailRunAfterCreate = "docker: Error response from daemon: failed to create task: OCI runtime create failed"
	r.hosts[1].FailRm = "Error response from daemon: removal of container is already in progress"
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Cleanup || !strings.Contains(err.Error(), "LEFT BEHIND on 10.9.0.2") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if r.hosts[0].Containers() != 0 {
		t.Error("the container on the healthy host was not rolled back")
	}
}

// The second run attaches without touching sshd: the running sshd has the
// cluster's keys (issue 9 item 11 keeps it from being restarted for
// nothing).
func TestAttachLeavesAMatchingSSHDAlone(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	before := len(r.hosts[0].Lines())
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	for _, l := range r.hosts[0].Lines()[before:] {
		if strings.Contains(l, " sh -s < ") {
			t.Errorf("attach reinstalled sshd: %s", l)
		}
		// The probe saw cvs's sshd with the cluster's files: no docker
		// exec checks it again.
		if strings.HasPrefix(l, "docker exec") && strings.Contains(l, "cvs-sshd.pid") {
			t.Errorf("attach checked sshd again: %s", l)
		}
	}
	// Files that differ from the cluster's (keys changed): checked, and
	// the sshd restarted with the cluster's.
	for _, h := range r.hosts {
		h.SetSSHDFiles("stale")
	}
	before = len(r.hosts[0].Lines())
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(r.hosts[0].Lines()[before:], "\n"), " sh -s < ") {
		t.Error("stale sshd files were not replaced")
	}
}

// Every run that may change containers leaves a record: the image, what
// was done on each host and the container there after, each step, the
// exit code; a refused run too; history finds it by ID prefix.
func TestRunRecords(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	r.hosts[1].Step = func(string) (string, int) { return "", 4 }
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Failed || rep.Record == "" {
		t.Fatalf("exit %d, record %q", exitcode.Of(err), rep.Record)
	}
	rec, err := FindRun("")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.hosts[0].Container("cvs-t")
	if rec.Command != "run" || rec.Suite != "install" || rec.Image != testImage || rec.ExitCode != 1 ||
		len(rec.Hosts) != 2 || rec.Hosts[0].Action != "launch" || rec.Hosts[0].ContainerID != c.ID || rec.Hosts[0].ImageID != testImageID ||
		len(rec.Steps) != 2 || rec.Steps[1].ExitCode != 4 || rec.End.Before(rec.Start) {
		t.Errorf("record = %+v", rec)
	}
	if fi, err := os.Stat(rep.Record); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("record folder: %v %v", fi, err)
	}

	// down is recorded, and so is a refused run.
	down, _ := Down(context.Background(), r.cfg, true, r.opts)
	if len(down.Removed) != 2 {
		t.Fatalf("down: %+v", down)
	}
	r.persistentContainer(r.hosts[0], "running")
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); exitcode.Of(err) != exitcode.Refused {
		t.Fatalf("partial persistence: %v", err)
	}
	all, err := History()
	if err != nil || len(all) != 3 {
		t.Fatalf("history: %d records, %v", len(all), err)
	}
	if all[0].Verdict != "refuse" || all[0].ExitCode != 5 || all[1].Command != "down" {
		t.Errorf("newest first: %+v / %+v", all[0], all[1])
	}
	if got, err := FindRun(all[1].ID[:6]); err != nil || got.ID != all[1].ID {
		t.Errorf("prefix lookup: %v %v", got.ID, err)
	}
	if _, err := FindRun("zz"); err == nil {
		t.Error("no error for an unknown run")
	}
}

// Issue 10: hosts whose local tag names different images are refused
// before anything is launched (exit 5), instead of launched and rolled
// back.
func TestLocalTagSkewRefusedBeforeLaunch(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePerRun)
	r.hosts[2].Images[testImage] = "sha256:other"
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "image skew before launch") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if r.launches() != 0 || !strings.Contains(rep.Plan.Hosts[2].Note, "sha256:other") {
		t.Errorf("%d launches; plan %+v", r.launches(), rep.Plan.Hosts)
	}
}

// testRegistry serves go-containerregistry's in-memory registry and
// returns its host:port.
func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(stdlog.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pushRandom(t *testing.T, ref string) string {
	t.Helper()
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

// Issue 10, digest pinning: the tag is resolved once; every host launches
// repo@digest even when the tag is re-pushed between two hosts' launches;
// the record names the digest; with the registry gone, "required" refuses
// before any change and "prefer" launches the tag.
func TestPinning(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/work:1"
	d1 := pushRandom(t, ref)
	r := newRig(t, 3, cluster.LifetimePerRun)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = ref, ref, cluster.PinPrefer
	r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
	var once sync.Once
	for _, h := range r.hosts {
		h.PullAs = testImageID
		h.OnCommand = func(argv []string) {
			if len(argv) > 1 && argv[1] == "run" {
				once.Do(func() { pushRandom(t, ref) }) // the tag moves mid-run
			}
		}
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	want := host + "/team/work@" + d1
	if rep.Digest != d1 || rep.LaunchedImage != want || rep.EffectiveImage != ref {
		t.Errorf("report: digest %s launched %s", rep.Digest, rep.LaunchedImage)
	}
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if strings.HasPrefix(l, "docker run ") && !strings.Contains(l, " "+want+" ") {
				t.Errorf("%s launched something else than %s: %s", h.Name, want, l)
			}
		}
	}
	if rec, _ := FindRun(""); rec.Digest != d1 || rec.LaunchedImage != want || rec.Image != ref {
		t.Errorf("record: %+v", rec)
	}

	// The registry is gone (and nothing cached).
	r2 := newRig(t, 2, cluster.LifetimePerRun)
	r2.cfg.Container.Image, r2.cfg.Container.ConfiguredImage = "127.0.0.1:1/team/work:1", "127.0.0.1:1/team/work:1"
	r2.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 2 * time.Second}
	r2.cfg.Container.Pin = cluster.PinRequired
	if _, err := Run(context.Background(), r2.cfg, r2.suite(t, "install"), false, r2.opts); exitcode.Of(err) != exitcode.Preflight || r2.launches() != 0 {
		t.Errorf("required, registry gone: exit %d, %d launches: %v", exitcode.Of(err), r2.launches(), err)
	}
	r2.cfg.Container.Pin = cluster.PinPrefer
	for _, h := range r2.hosts {
		h.PullAs = testImageID
	}
	rep, err = Run(context.Background(), r2.cfg, r2.suite(t, "install"), false, r2.opts)
	if err != nil || rep.Digest != "" || rep.LaunchedImage != "127.0.0.1:1/team/work:1" {
		t.Errorf("prefer, registry gone: %v %+v", err, rep)
	}
}

// Issue 10, distribute = "push": the image is obtained once on this
// machine and each host gets only the layers it lacks; a host holding the
// image gets nothing; the hosts launch the loaded tag; a second run sends
// nothing; a store that cannot complete a partial tarball gets it whole.
func TestPushSendsOnlyMissingLayers(t *testing.T) {
	host := testRegistry(t)
	base, _ := random.Image(64<<10, 2)
	top, _ := random.Layer(1024, types.DockerLayer)
	derived, _ := mutate.AppendLayers(base, top)
	ref := host + "/team/derived:1"
	rr, _ := name.ParseReference(ref)
	if err := remote.Write(rr, derived); err != nil {
		t.Fatal(err)
	}
	id, _ := derived.ConfigName()
	baseID, _ := base.ConfigName()
	diffs := func(img v1.Image) []string {
		ls, _ := img.Layers()
		var out []string
		for _, l := range ls {
			d, _ := l.DiffID()
			out = append(out, d.String())
		}
		return out
	}

	r := newRig(t, 4, cluster.LifetimePerRun)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Distribute = ref, ref, cluster.DistributePush
	r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
	// h1 has nothing; h2 has the base; h3 has the image; h4 has the base
	// but cannot load partial tarballs.
	for _, h := range r.hosts {
		h.Images = map[string]string{}
	}
	r.hosts[1].Layers = map[string][]string{baseID.String(): diffs(base)}
	r.hosts[2].Layers = map[string][]string{id.String(): diffs(derived)}
	r.hosts[2].Images[ref] = id.String()
	r.hosts[3].Layers = map[string][]string{baseID.String(): diffs(base)}
	r.hosts[3].NoPartialLoad = true

	var logs syncBuffer
	r.opts.Log = log.New(&logs)
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	// The push's time limit is said, with what it was computed from
	// (issue 21 item 5).
	if !strings.Contains(logs.String(), "push time limit") {
		t.Errorf("the log does not say the push's time limit:\n%s", logs.String())
	}
	p := rep.Pushes
	if len(p) != 4 || p[0].Layers != 3 || p[1].Layers != 1 || !p[2].Skipped || p[2].Bytes != 0 || !p[3].Full || p[3].Layers != 3 {
		t.Fatalf("pushes = %+v", p)
	}
	if p[1].Bytes*4 > p[0].Bytes {
		t.Errorf("the host with the base got %d bytes, the empty one %d", p[1].Bytes, p[0].Bytes)
	}
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if strings.HasPrefix(l, "docker run ") && !strings.Contains(l, " "+ref+" ") {
				t.Errorf("%s launched something else than the loaded %s: %s", h.Name, ref, l)
			}
		}
		for path := range h.Uploads() {
			if !h.Removed(path) {
				t.Errorf("%s: %s left on the host", h.Name, path)
			}
		}
	}
	if rec, _ := FindRun(""); rec.Distribution != "push" || rec.Hosts[1].PushedLayers != 1 {
		t.Errorf("record: %+v", rec)
	}
	rep, err = Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Pushes {
		if !p.Skipped || p.Bytes != 0 {
			t.Errorf("second run sent to %s: %+v", p.Host, p)
		}
	}
	// cvs image push with a prefix of the cached image's ID, to a new host
	// state: h1 lost the image.
	r.hosts[0].Images, r.hosts[0].Layers = map[string]string{}, nil
	prefix := strings.TrimPrefix(id.String(), "sha256:")[:10]
	pr, err := PushImage(context.Background(), r.cfg, prefix, r.opts)
	if err != nil || pr.ImageID != id.String() || len(pr.Pushes) != 4 || pr.Pushes[0].Layers != 3 || !pr.Pushes[1].Skipped {
		t.Errorf("image push %s: %v %+v", prefix, err, pr)
	}
	if all, _ := CachedImages(r.opts); len(all) != 1 || all[0].ImageID != id.String() {
		t.Errorf("cache: %+v", all)
	}
	if rec, _ := FindRun(""); rec.Command != "image push" {
		t.Errorf("push not recorded: %+v", rec)
	}
}

// defaultSetupHash is the hash of the packaged setup script.
func defaultSetupHash(t *testing.T) string {
	script, err := provision.Script("")
	if err != nil {
		t.Fatal(err)
	}
	return provision.Hash(script)
}

// Issue 11: a cold start killed between launch and provisioning leaves
// running containers without a provisioning record; attach refuses (exit
// 5) instead of running steps in them, `up --reprovision` runs the script
// in exactly those, and an edited setup script is caught the same way.
func TestUnprovisionedContainersRefusedThenReprovisioned(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePersistent)
	hash := defaultSetupHash(t)
	for i, h := range r.hosts {
		c := fakehost.Container{Name: "cvs-t", Image: testImageID, Ref: testImage, State: "running", SSHD: true,
			Labels: map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File,
				lifetime.LabelLifetime: "persistent", docker.LabelSetupHash: hash}}
		if i == 0 {
			c.Provisioned, c.Record = 1, "sha256="+hash+"\ncvs=test\ntime=x\n"
		}
		h.AddContainer(c)
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "never provisioned") || !strings.Contains(err.Error(), "--reprovision") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if len(rep.Steps) != 0 {
		t.Error("steps ran in unprovisioned containers")
	}
	if _, err := Up(context.Background(), r.cfg, UpOptions{Reprovision: true}, r.opts); err != nil {
		t.Fatal(err)
	}
	for i, h := range r.hosts {
		c, _ := h.Container("cvs-t")
		if want := 1; c.Provisioned != want || c.Record == "" {
			t.Errorf("host %d: provisioned %d times, record %q", i, c.Provisioned, c.Record)
		}
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); err != nil {
		t.Fatalf("after reprovision: %v", err)
	}

	// The setup script changes: every container was provisioned with
	// another one.
	script := filepath.Join(t.TempDir(), "setup.sh")
	os.WriteFile(script, []byte("echo new\n"), 0o644)
	r.cfg.Container.SetupScript = script
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "another setup script") {
		t.Fatalf("edited script: exit %d: %v", exitcode.Of(err), err)
	}
	if _, err := Up(context.Background(), r.cfg, UpOptions{Reprovision: true}, r.opts); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); err != nil {
		t.Fatalf("after reprovisioning with the new script: %v", err)
	}
}

// Issue 11, safe repair: one host rebooted (its container exited), one
// lost its container; `up --repair` starts the first (same container,
// overlay kept), launches the second with the image the others run, and
// never touches the running one. A paused container is left alone.
func TestRepair(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePersistent)
	hash := defaultSetupHash(t)
	labels := map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File,
		lifetime.LabelLifetime: "persistent", docker.LabelSetupHash: hash}
	rec := "sha256=" + hash + "\ncvs=test\ntime=x\n"
	r.hosts[0].AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, State: "running", SSHD: true, Labels: labels, Record: rec, Provisioned: 1})
	r.hosts[1].AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, State: "exited", Labels: labels, Record: rec, Provisioned: 1,
		Files: map[string][]byte{"/opt/installed": []byte("an hour of work")}})
	before0, _ := r.hosts[0].Container("cvs-t")
	before1, _ := r.hosts[1].Container("cvs-t")

	_, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "cvs up --repair") {
		t.Fatalf("partial: exit %d: %v", exitcode.Of(err), err)
	}
	rep, err := Up(context.Background(), r.cfg, UpOptions{Repair: true, DryRun: true}, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep.Plan); got != "attach,start,launch" || rep.Plan.Hosts[2].Image != testImageID {
		t.Fatalf("repair plan: %s %+v", got, rep.Plan.Hosts)
	}
	n0 := len(r.hosts[0].Lines())
	// Not confirmed: nothing changes.
	noOpts := r.opts
	noOpts.Confirm = func(*RunReport) bool { return false }
	if _, err := Up(context.Background(), r.cfg, UpOptions{Repair: true}, noOpts); exitcode.Of(err) != exitcode.Refused {
		t.Errorf("unconfirmed repair: %v", err)
	}
	if c, _ := r.hosts[1].Container("cvs-t"); c.State != "exited" {
		t.Fatal("an unconfirmed repair changed a container")
	}
	if _, err := Up(context.Background(), r.cfg, UpOptions{Repair: true}, r.opts); err != nil {
		t.Fatal(err)
	}
	c0, _ := r.hosts[0].Container("cvs-t")
	c1, _ := r.hosts[1].Container("cvs-t")
	c2, ok := r.hosts[2].Container("cvs-t")
	if c0.ID != before0.ID || c0.StartedAt != before0.StartedAt || c0.Provisioned != 1 {
		t.Errorf("the running container was touched: %+v", c0)
	}
	for _, l := range r.hosts[0].Lines()[n0:] {
		if strings.Contains(l, "@@cvs-probe@@") {
			continue // the probe's sweep names cvs-setup folders; it runs no setup
		}
		if strings.Contains(l, "docker run") || strings.Contains(l, "docker start") || strings.Contains(l, "docker rm") || strings.Contains(l, "cvs-setup") {
			t.Errorf("host1 got %s", l)
		}
	}
	if c1.ID != before1.ID || c1.State != "running" || string(c1.Files["/opt/installed"]) != "an hour of work" || c1.Provisioned != 1 {
		t.Errorf("the stopped container was not started as it was: %+v", c1)
	}
	if !ok || c2.Image != testImageID || c2.Provisioned != 1 || !c2.SSHD {
		t.Errorf("the missing container: %+v (exists %v)", c2, ok)
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); err != nil {
		t.Errorf("after the repair: %v", err)
	}

	// Paused: never touched, the advice says how to unpause.
	r2 := newRig(t, 2, cluster.LifetimePersistent)
	r2.hosts[0].AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, State: "running", Labels: labels})
	r2.hosts[1].AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, State: "paused", Labels: labels})
	if _, err := Up(context.Background(), r2.cfg, UpOptions{Repair: true}, r2.opts); exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "docker unpause") {
		t.Errorf("paused: %v", err)
	}
}

func actions(p Plan) string {
	var a []string
	for _, h := range p.Hosts {
		a = append(a, string(h.Action))
	}
	return strings.Join(a, ",")
}

// Issue 11, drift: a container launched with other settings than the
// cluster file's now is reported with the keys that differ, once for the
// hosts that share them (issue 23); a warning by default, a refusal with
// strict_attach.
func TestDriftOnAttach(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	r.cfg.Container.Volumes = []string{"/data:/data:ro"}
	r.cfg.Container.ShmSize = "16g"
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if err != nil {
		t.Fatalf("drift must only warn: %v", err)
	}
	if len(rep.Plan.Warnings) != 1 || !strings.HasPrefix(rep.Plan.Warnings[0], "10.9.0.[1-2]: drift: ") || !strings.Contains(rep.Plan.Warnings[0], "shm_size") || !strings.Contains(rep.Plan.Warnings[0], "volumes") || !strings.Contains(rep.Plan.Warnings[0], "/data:/data:ro") {
		t.Errorf("warnings: %q", rep.Plan.Warnings)
	}
	if st, _ := Status(context.Background(), r.cfg, r.opts); !strings.Contains(st.Plan.Hosts[1].Note, "drift") {
		t.Errorf("status does not show the drift: %+v", st.Plan.Hosts[1])
	}
	r.cfg.Container.StrictAttach = true
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts); exitcode.Of(err) != exitcode.Refused || !strings.Contains(err.Error(), "strict_attach") {
		t.Errorf("strict: %v", err)
	}
}

// Issue 11, preflight before touching any host: cloned machine IDs, a
// clock off by more than max_clock_skew, and sshd_port taken on the host
// network of a host where the container would be launched each stop the
// run (exit 3) with the host named and the fix, nothing changed.
func TestHostPreflight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(r *rig)
		want  string
	}{
		{"cloned machine id", func(r *rig) { r.hosts[0].MachineID, r.hosts[2].MachineID = "abc123", "abc123" }, "share the machine ID abc123"},
		{"clock skew", func(r *rig) { r.hosts[1].ClockOffset = -5 * time.Minute }, "more than 1m0s off"},
		{"port busy", func(r *rig) { r.cfg.Container.Network = "host"; r.hosts[2].PortBusy = true }, "port 2224 is already in use on 10.9.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 3, cluster.LifetimePerRun)
			tc.fault(r)
			rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
			if exitcode.Of(err) != exitcode.Preflight || !strings.Contains(err.Error(), tc.want) || r.launches() != 0 {
				t.Fatalf("exit %d, %d launches: %v", exitcode.Of(err), r.launches(), err)
			}
			if rep.Plan.Verdict != Preflight {
				t.Errorf("verdict %s", rep.Plan.Verdict)
			}
		})
	}
	// The port check is for launches on the host network only.
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[0].PortBusy = true
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Errorf("bridge network, port busy on the host: %v", err)
	}
}

// Issue 12: every run stores each step's whole output per host, and its
// JUnit XML has one testcase per step and host, the failure with its
// output's tail.
func TestRunLogsAndJUnit(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[0].Step = func(string) (string, int) { return "line one\nall good\n", 0 }
	r.hosts[1].Step = func(string) (string, int) { return "line one\nE: the GPU fell off the bus\n", 3 }
	rep, _ := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	rec, logs, err := RunLogs(filepath.Base(rep.Record), "", "")
	if err != nil || len(logs) != 2 || rec.Suite != "install" {
		t.Fatalf("logs: %v %+v", err, logs)
	}
	data, _ := os.ReadFile(logs[1].Path)
	if logs[1].Host != "10.9.0.2" || !strings.Contains(string(data), "out| E: the GPU fell off the bus") {
		t.Errorf("log of %s:\n%s", logs[1].Host, data)
	}
	var b strings.Builder
	if err := WriteJUnit(&b, ""); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Class   string `xml:"classname,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Props []struct {
					Name  string `xml:"name,attr"`
					Value string `xml:"value,attr"`
				} `xml:"properties>property"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if doc.Tests != 2 || doc.Failures != 1 || len(doc.Suites) != 1 || doc.Suites[0].Name != "install" {
		t.Fatalf("junit:\n%s", b.String())
	}
	c := doc.Suites[0].Cases[1]
	if c.Name != "tools on 10.9.0.2" || c.Class != "install.tools" || c.Failure == nil || c.Failure.Message != "exit 3" ||
		!strings.Contains(c.Failure.Text, "E: the GPU fell off the bus") || c.Props[0].Value != "10.9.0.2" {
		t.Errorf("failing case: %+v", c)
	}
	if doc.Suites[0].Cases[0].Failure != nil {
		t.Error("the passing case has a failure")
	}
}

// A host without room under its Docker root for the layers it lacks is
// refused before anything is sent to it, naming the space.
func TestPushRefusesAFullDisk(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/big:1"
	img, _ := random.Image(1<<20, 1)
	rr, _ := name.ParseReference(ref)
	if err := remote.Write(rr, img); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Distribute = ref, ref, cluster.DistributePush
	r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
	for _, h := range r.hosts {
		h.Images = map[string]string{}
	}
	r.hosts[1].DiskFreeKiB = 1
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Partial || !strings.Contains(err.Error(), "10.9.0.2: not enough disk") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	for _, h := range r.hosts {
		if h.Containers() != 0 {
			t.Errorf("%s: container left", h.Name)
		}
	}
	if len(r.hosts[1].Uploads()) != 0 {
		t.Error("layers were sent to the full host")
	}
}

// A push's time limit scales with the bytes each host is sent and how
// many hosts share this machine's link (issue 21 item 5): the 61 GB image
// to 64 hosts over one 10 GbE link needs about 52 minutes, more than the
// fixed 30 minutes there was.
func TestPushLimit(t *testing.T) {
	const gb = 1_000_000_000
	for _, c := range []struct {
		bytes    int64
		parallel int
		atLeast  time.Duration
		atMost   time.Duration
	}{
		{0, 1, pushFloor, pushFloor},
		{1 << 20, 64, pushFloor, pushFloor + time.Minute},
		// 61 GB × 64 over 10 GbE (1.25 GB/s) is 52 min; a 1 GbE link
		// (~110 MB/s) about 10 h.
		{61 * gb, 64, 10 * time.Hour, 12 * time.Hour},
		{61 * gb, 1, 15 * time.Minute, time.Hour},
	} {
		got := pushLimit(c.bytes, c.parallel)
		if got < c.atLeast || got > c.atMost {
			t.Errorf("pushLimit(%d, %d) = %s, want between %s and %s", c.bytes, c.parallel, got, c.atLeast, c.atMost)
		}
	}
}

// A step's result keeps the end of its output; the whole of it is read
// back from the run's logs when wanted (--group), not kept in memory
// (issue 21 item 10).
func TestStepOutputReadBackFromLogs(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	var out strings.Builder
	for i := range 100 {
		fmt.Fprintf(&out, "line %d\n", i)
	}
	for _, h := range r.hosts {
		h.Step = func(string) (string, int) { return out.String(), 0 }
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil || len(rep.Steps) == 0 {
		t.Fatalf("%v %+v", err, rep)
	}
	for _, st := range rep.Steps {
		if strings.Count(st.Stdout, "\n") != 20 || !strings.HasPrefix(st.Stdout, "line 80\n") || st.StdoutCut == 0 || st.Log == "" {
			t.Errorf("%s on %s keeps %q (cut %d, log %q)", st.Step, st.Host, st.Stdout, st.StdoutCut, st.Log)
		}
		if whole := StepOutput(st); whole != out.String() {
			t.Errorf("%s on %s read back %d bytes, not the %d it printed", st.Step, st.Host, len(whole), out.Len())
		}
	}
}

// downTransport fails every request, as an unreachable registry does.
type downTransport struct{}

func (downTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
}

// Issue 21 item 1: a tag re-pushed since the last run is seen by the next
// one at once: the log warns with both digests, and the attached
// containers still on the old digest are named with both; with the
// registry down, the cached digest stands in and the log says why.
func TestRePushedTagSeenAtOnce(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/work:1"
	d1 := pushRandom(t, ref)
	r := newRig(t, 2, cluster.LifetimePersistent)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = ref, ref, cluster.PinPrefer
	r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
	if _, err := r.opts.Resolver.Resolve(context.Background(), ref); err != nil { // an earlier run
		t.Fatal(err)
	}
	for _, h := range r.hosts {
		h.AddContainer(fakehost.Container{Name: "cvs-t", Image: testImageID, Ref: host + "/team/work@" + d1, State: "running",
			StartedAt: "2026-11-30T10:00:00Z", SSHD: true, Provisioned: 1,
			Labels: map[string]string{lifetime.LabelManaged: "true", lifetime.LabelCluster: r.cfg.File,
				lifetime.LabelLifetime: "persistent", lifetime.LabelRunID: "earlier"}})
	}
	d2 := pushRandom(t, ref)
	var logs strings.Builder
	r.opts.Log = log.New(&logs)
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != d2 {
		t.Errorf("pinned %s, want the re-pushed %s", rep.Digest, d2)
	}
	out := logs.String()
	if !regexp.MustCompile(`WARN.*` + regexp.QuoteMeta(d1) + `.*` + regexp.QuoteMeta(d2)).MatchString(out) {
		t.Errorf("no warning naming both digests:\n%s", out)
	}
	if !regexp.MustCompile(`WARN.*10\.9\.0\.\[?1.*launched from ` + regexp.QuoteMeta(d1) + `.*now names ` + regexp.QuoteMeta(d2)).MatchString(out) {
		t.Errorf("the attached containers on the old digest are not named:\n%s", out)
	}

	logs.Reset()
	r.opts.Resolver.Transport = downTransport{}
	rep, err = Run(context.Background(), r.cfg, r.suite(t, "test"), false, r.opts)
	if err != nil || rep.Digest != d2 {
		t.Fatalf("registry down: %v, digest %s", err, rep.Digest)
	}
	if !strings.Contains(logs.String(), "from=\"cache (registry unreachable:") {
		t.Errorf("the log does not say the cache stood in:\n%s", logs.String())
	}
}

// Issue 21 item 4: `cvs image push ID` pushes exactly the cached entry
// named, even when it has no digest, the tag now names another image in
// the registry, and a newer entry of the same reference is cached.
func TestImagePushByIDPushesExactlyThatEntry(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/work:1"
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = ref, ref, cluster.PinPrefer
	r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
	r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
	// Saved from this machine's Docker (the registry down): without a
	// digest, or under one Docker knows.
	cache := func(img v1.Image, digest string) images.Entry {
		id, _ := img.ConfigName()
		e, _, _, err := r.opts.ImageCache.Obtain(context.Background(), ref, digest, images.ObtainOptions{
			Transport: remote.WithTransport(downTransport{}),
			DockerSave: func(_ context.Context, ref, file string) error {
				tag, _ := name.NewTag(ref)
				return tarball.WriteToFile(file, tag, img)
			},
			DockerInspect: func(context.Context, string) (images.Inspected, error) {
				return images.Inspected{ID: id.String(), RepoDigests: []string{host + "/team/work@" + digest}}, nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a, _ := random.Image(256, 1)
	named := cache(a, "")
	time.Sleep(10 * time.Millisecond)
	c, _ := random.Image(256, 1)
	newer := cache(c, "sha256:"+strings.Repeat("c", 64))
	if _, err := r.opts.ImageCache.Use(newer); err != nil { // the most recently used
		t.Fatal(err)
	}
	pushRandom(t, ref) // the tag now names a third image
	for _, h := range r.hosts {
		h.Images = map[string]string{}
	}
	prefix := strings.TrimPrefix(named.ImageID, "sha256:")[:12]
	pr, err := PushImage(context.Background(), r.cfg, prefix, r.opts)
	if err != nil || pr.ImageID != named.ImageID {
		t.Fatalf("image push %s: pushed %s, want %s (%v)", prefix, pr.ImageID, named.ImageID, err)
	}
	// The use stamped lastused (seed 004): it is now the most recent.
	if all, _ := CachedImages(r.opts); len(all) != 2 || all[0].ImageID != named.ImageID || !all[0].LastUsed.After(newer.LastUsed) {
		t.Errorf("lastused not stamped by the push: %+v", all)
	}
	for _, h := range r.hosts {
		for _, l := range h.Lines() {
			if strings.Contains(l, "pull") {
				t.Errorf("%s: %s", h.Name, l)
			}
		}
	}
}

// pushIndex puts an image index at ref with one random image for each
// platform given; it returns the index digest and each platform's image.
func pushIndex(t *testing.T, ref string, platforms ...string) (string, map[string]v1.Image) {
	t.Helper()
	imgs := map[string]v1.Image{}
	idx := v1.ImageIndex(empty.Index)
	for _, p := range platforms {
		img, _ := random.Image(256, 1)
		pl, _ := v1.ParsePlatform(p)
		imgs[p] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: pl}})
	}
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d.String(), imgs
}

// Issue 21 item 2: the platform of a multi-platform image comes from the
// hosts' architectures: hosts that need a platform the index lacks stop
// the run before any change (exit 3, the hosts and their architectures
// named); hosts of one architecture get its image pushed; mixed hosts
// with an index that has them all each pull their own; platform forces
// one.
func TestMultiPlatformImages(t *testing.T) {
	host := testRegistry(t)
	amdOnly := host + "/team/amd:1"
	pushIndex(t, amdOnly, "linux/amd64")
	both := host + "/team/both:1"
	idxDigest, imgs := pushIndex(t, both, "linux/amd64", "linux/arm64")
	newMulti := func(image string, archs ...string) *rig {
		r := newRig(t, len(archs), cluster.LifetimePerRun)
		r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = image, image, cluster.PinPrefer
		r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
		r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
		for i, h := range r.hosts {
			h.Arch, h.PullAs = archs[i], testImageID
		}
		return r
	}
	launched := func(r *rig) []string {
		var out []string
		for _, h := range r.hosts {
			for _, l := range h.Lines() {
				if strings.HasPrefix(l, "docker run ") {
					out = append(out, l)
				}
			}
		}
		return out
	}

	r := newMulti(amdOnly, "x86_64", "aarch64", "aarch64")
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Preflight || r.launches() != 0 || err == nil ||
		!strings.Contains(err.Error(), "10.9.0.1 (amd64)") || !strings.Contains(err.Error(), "10.9.0.[2-3] (arm64)") {
		t.Errorf("mixed hosts, amd64-only index: exit %d, %d launches: %v", exitcode.Of(err), r.launches(), err)
	}

	r = newMulti(both, "aarch64", "aarch64")
	r.cfg.Container.Distribute = cluster.DistributePush
	for _, h := range r.hosts {
		h.Images = map[string]string{}
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	arm, _ := imgs["linux/arm64"].ConfigName()
	if all, _ := CachedImages(r.opts); err != nil || len(all) != 1 || all[0].ImageID != arm.String() || all[0].Platform != "linux/arm64" || all[0].Digest != idxDigest {
		t.Errorf("arm64 hosts, push: %v %+v (want the arm64 image %s under the index %s)", err, all, arm, idxDigest)
	}
	_ = rep

	r = newMulti(both, "x86_64", "aarch64")
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatalf("mixed hosts, index of both: %v", err)
	}
	for _, l := range launched(r) {
		if !strings.Contains(l, " "+host+"/team/both@"+idxDigest+" ") {
			t.Errorf("mixed hosts launched other than the index: %s", l)
		}
	}

	r = newMulti(both, "x86_64", "x86_64")
	r.cfg.Container.Platform = "linux/arm64"
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatalf("forced platform: %v", err)
	}
	armManifest, _ := imgs["linux/arm64"].Digest()
	for _, l := range launched(r) {
		if !strings.Contains(l, " "+host+"/team/both@"+armManifest.String()+" ") {
			t.Errorf("platform = linux/arm64 launched other than its manifest %s: %s", armManifest, l)
		}
	}
}

// Issue 23: a run on 500 hosts ends with a summary of a line per step, the
// two failing hosts named on it (folded) and under it; the error, the
// teardown note and --verbose's full table stay what they say.
func TestSummaryOf500Hosts(t *testing.T) {
	if testing.Short() {
		t.Skip("500 fake hosts")
	}
	r := newRig(t, 500, cluster.LifetimePerRun)
	r.cfg.MaxParallel = 64
	for _, i := range []int{4, 11} {
		r.hosts[i-1].Step = func(string) (string, int) { return "E: ECC errors on GPU 3\n", 1 }
	}
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Failed || !strings.Contains(err.Error(), "step failed: tools on 10.9.0.[4,11] (exit 1)") {
		t.Fatalf("exit %d: %v", exitcode.Of(err), err)
	}
	if !strings.Contains(rep.Teardown, "removed the containers this run launched on: 10.9.0.[1-500]") {
		t.Errorf("teardown = %q", rep.Teardown)
	}
	var b strings.Builder
	Summary(&b, rep.Steps, false)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "tools  ok 498 · failed 2: 10.9.0.[4,11] · slowest ") ||
		!strings.HasPrefix(lines[1], "  10.9.0.4   exit 1  ") || !strings.HasSuffix(lines[1], "E: ECC errors on GPU 3") ||
		!strings.HasPrefix(lines[2], "  10.9.0.11  exit 1  ") {
		t.Errorf("summary of 500 hosts:\n%s", b.String())
	}
	b.Reset()
	Summary(&b, rep.Steps, true)
	if n := strings.Count(b.String(), "\n"); n != 501 {
		t.Errorf("--verbose: %d lines, want a header and 500 rows", n)
	}
}

// countingRegistry is an in-memory registry that counts the blob
// requests it answers (what a fetch of image content costs).
func countingRegistry(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var blobs atomic.Int64
	reg := registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/blobs/") && req.Method == http.MethodGet {
			blobs.Add(1)
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &blobs
}

// Issue 21 item 2, distribute = "push" to hosts of several architectures:
// each platform's image is fetched from the index once and cached under
// the index digest and its platform; each host is sent the one for its
// architecture and launches it; the next run finds both in the cache and
// fetches nothing. An index without one of the hosts' platforms is
// refused before any change, naming the hosts and their architectures.
func TestPushToHostsOfSeveralArchitectures(t *testing.T) {
	host, blobs := countingRegistry(t)
	ref := host + "/team/both:1"
	idxDigest, imgs := pushIndex(t, ref, "linux/amd64", "linux/arm64")
	archs := []string{"x86_64", "aarch64", "aarch64"}
	r := newRig(t, len(archs), cluster.LifetimePerRun)
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = ref, ref, cluster.PinRequired
	r.cfg.Container.Distribute = cluster.DistributePush
	r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
	r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
	want := map[string]string{} // host -> image ID
	for i, h := range r.hosts {
		h.Arch, h.Images = archs[i], map[string]string{}
		p := "linux/amd64"
		if archs[i] == "aarch64" {
			p = "linux/arm64"
		}
		id, _ := imgs[p].ConfigName()
		want[h.Name] = id.String()
	}
	run := func(what string) {
		t.Helper()
		if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
			t.Fatalf("%s: exit %d: %v", what, exitcode.Of(err), err)
		}
		for _, h := range r.hosts {
			c, ok := h.Container("cvs-t")
			if !ok && r.cfg.Container.Lifetime == cluster.LifetimePerRun {
				// per_run removed it: the launch line says what ran.
				var line string
				for _, l := range h.Lines() {
					if strings.HasPrefix(l, "docker run ") {
						line = l
					}
				}
				fields := strings.Fields(line)
				c.Image = ""
				for _, f := range fields {
					if id, ok := h.Images[f]; ok {
						c.Image = id
					}
				}
			}
			if c.Image != want[h.Name] {
				t.Errorf("%s: %s launched %q, want its platform's image %s", what, h.Name, c.Image, want[h.Name])
			}
		}
	}
	run("first run")
	all, _ := CachedImages(r.opts)
	got := map[string]string{}
	for _, e := range all {
		if e.Digest != idxDigest {
			t.Errorf("cache entry %s filed under %s, want the index %s", e.Platform, e.Digest, idxDigest)
		}
		got[e.Platform] = e.ImageID
	}
	amd, _ := imgs["linux/amd64"].ConfigName()
	arm, _ := imgs["linux/arm64"].ConfigName()
	if len(all) != 2 || got["linux/amd64"] != amd.String() || got["linux/arm64"] != arm.String() {
		t.Errorf("cache after the first run: %+v", all)
	}

	// The next run, on emptied hosts, finds both platforms in the cache.
	for _, h := range r.hosts {
		h.Images = map[string]string{}
		h.Layers = nil
	}
	before := blobs.Load()
	run("second run")
	if n := blobs.Load() - before; n != 0 {
		t.Errorf("second run fetched %d blobs from the registry: the cache entries were missed", n)
	}
	if all, _ := CachedImages(r.opts); len(all) != 2 {
		t.Errorf("cache after the second run: %+v", all)
	}

	// An index without arm64: refused, hosts and architectures named.
	amdOnly := host + "/team/amd:1"
	pushIndex(t, amdOnly, "linux/amd64")
	r.cfg.Container.Image, r.cfg.Container.ConfiguredImage = amdOnly, amdOnly
	launched := r.launches()
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if exitcode.Of(err) != exitcode.Preflight || r.launches() != launched || err == nil ||
		!strings.Contains(err.Error(), "10.9.0.1 (amd64)") || !strings.Contains(err.Error(), "10.9.0.[2-3] (arm64)") {
		t.Errorf("push, amd64-only index, mixed hosts: exit %d: %v", exitcode.Of(err), err)
	}
}

// Issue 21 item 2: a single-platform image (no index) whose configuration
// names another architecture than the hosts', or another platform than
// the platform key forces, is refused when it is pinned (exit 3, nothing
// changed), naming the hosts, the architectures and the key.
func TestSinglePlatformImageOfAnotherArchitecture(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/amd64only:1"
	r0, _ := name.ParseReference(ref)
	if err := remote.Write(r0, imagetest.OfPlatform(t, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		archs    []string
		platform string
		push     bool
		ok       bool
		says     []string
	}{
		{name: "amd64 hosts", archs: []string{"x86_64", "x86_64"}, ok: true},
		{name: "arm64 hosts", archs: []string{"aarch64", "aarch64"}, says: []string{"10.9.0.[1-2] (arm64)", "linux/amd64", "platform"}},
		{name: "mixed hosts", archs: []string{"x86_64", "aarch64"}, says: []string{"10.9.0.2 (arm64)", "linux/amd64"}},
		{name: "mixed hosts, push", archs: []string{"x86_64", "aarch64"}, push: true, says: []string{"10.9.0.2 (arm64)", "linux/amd64"}},
		{name: "forced arm64", archs: []string{"x86_64", "x86_64"}, platform: "linux/arm64", says: []string{`platform = "linux/arm64"`, "linux/amd64", "10.9.0.[1-2] (amd64)"}},
		{name: "forced amd64 on arm64 hosts", archs: []string{"aarch64", "aarch64"}, platform: "linux/amd64", ok: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, len(c.archs), cluster.LifetimePerRun)
			r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Pin = ref, ref, cluster.PinPrefer
			r.cfg.Container.Platform = c.platform
			r.opts.Resolver = &images.Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
			r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
			if c.push {
				r.cfg.Container.Distribute = cluster.DistributePush
			}
			for i, h := range r.hosts {
				h.Arch, h.PullAs = c.archs[i], testImageID
			}
			_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if exitcode.Of(err) != exitcode.Preflight || r.launches() != 0 || err == nil {
				t.Fatalf("exit %d, %d launches, want 3 and none: %v", exitcode.Of(err), r.launches(), err)
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the refusal does not say %q: %v", s, err)
				}
			}
		})
	}
}

// Issue 21 item 2: the platform key applies also when the image is not
// pinned (pin = "off"): docker run is given --platform, so the host pulls
// (and runs) that platform.
func TestPlatformKeyWithoutPin(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.cfg.Container.Platform = "linux/arm64"
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	for _, h := range r.hosts {
		n := 0
		for _, l := range h.Lines() {
			if strings.HasPrefix(l, "docker run ") {
				n++
				if !strings.Contains(l, " --platform linux/arm64 ") {
					t.Errorf("%s: %s (no --platform linux/arm64)", h.Name, l)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d launches", h.Name, n)
		}
	}
}

// The platform key is part of the settings a container records: a
// persistent container launched for one platform is a drift warning
// when the key names another (it keeps running the first).
func TestPlatformKeyChangeIsDrift(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePersistent)
	r.cfg.Container.Platform = "linux/arm64"
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	r.cfg.Container.Platform = "linux/amd64"
	rep, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err != nil {
		t.Fatal(err)
	}
	// One warning for the hosts that share the difference (issue 23's
	// folding), naming both.
	if w := strings.Join(rep.Plan.Warnings, "\n"); !strings.Contains(w, `10.9.0.[1-2]: drift: `) || strings.Count(w, `platform: launched with "linux/arm64", the cluster file says "linux/amd64"`) != 1 {
		t.Errorf("no drift warning for the hosts naming the platform:\n%s", w)
	}
}
