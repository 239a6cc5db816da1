package lifetime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/transport"
)

// fakeDocker is one host with a Docker daemon, as far as Apply, Rollback,
// Teardown and RemoveLabelled can tell: it answers the docker commands
// they run and keeps the containers they make.
type fakeDocker struct {
	name string

	mu         sync.Mutex
	containers map[string]fakeContainer // by ID
	next       int
	lines      []string

	failRun  string // docker run exits 125 with this stderr
	image    string // the image ID docker run gives containers
	failRm   bool
	uploaded map[string]os.FileMode
}

type fakeContainer struct {
	name, image, runID string
	running            bool
}

var (
	reRunID  = regexp.MustCompile(`cvs\.run-id=([0-9a-z-]+)`)
	reFilter = regexp.MustCompile(`--filter 'label=cvs\.run-id=([0-9a-z-]+)'`)
)

func (f *fakeDocker) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := cmd.Line
	f.lines = append(f.lines, l)
	fail := func(code int, stderr string) (transport.Result, error) {
		return transport.Result{Stderr: []byte(stderr), ExitCode: code}, &transport.ExitError{Host: f.name, Cmd: l, Code: code, StderrTail: stderr}
	}
	ok := func(out string) (transport.Result, error) { return transport.Result{Stdout: []byte(out)}, nil }
	fields := strings.Fields(l)
	switch {
	case strings.HasPrefix(l, "docker run -d "):
		if f.failRun != "" {
			return fail(125, f.failRun)
		}
		f.next++
		id := fmt.Sprintf("%s-c%d", f.name, f.next)
		name := ""
		for i, w := range fields {
			if w == "--name" {
				name = fields[i+1]
			}
		}
		m := reRunID.FindStringSubmatch(l)
		if m == nil {
			return fail(1, "fake: no run-id label")
		}
		f.containers[id] = fakeContainer{name: name, image: f.image, runID: m[1], running: true}
		return ok(id + "\n")
	case strings.HasPrefix(l, "docker ps -aq "):
		m := reFilter.FindStringSubmatch(l)
		var ids []string
		for id, c := range f.containers {
			if m != nil && c.runID == m[1] {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		return ok(strings.Join(ids, "\n"))
	case strings.HasPrefix(l, "docker rm -f "):
		if f.failRm {
			return fail(1, "Error response from daemon: removal failed")
		}
		for _, id := range fields[3:] {
			for cid, c := range f.containers {
				if cid == id || c.name == id {
					delete(f.containers, cid)
				}
			}
		}
		return ok("")
	case strings.HasPrefix(l, "docker container inspect --format '{{.Image}}' "):
		name := fields[len(fields)-1]
		for _, c := range f.containers {
			if c.name == name {
				return ok(c.image + "\n")
			}
		}
		return fail(1, "Error: No such container: "+name)
	case strings.HasPrefix(l, "docker start "):
		return ok("")
	case strings.HasPrefix(l, "mktemp -d -t "):
		return ok("/tmp/cvs-env.AbCdEf1234\n")
	case strings.HasPrefix(l, "rm -rf -- "):
		return ok("")
	}
	return fail(127, "fake: unexpected command: "+l)
}

func (f *fakeDocker) Upload(_ context.Context, path string, _ []byte, mode os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploaded[path] = mode
	return nil
}
func (f *fakeDocker) Alive() bool  { return true }
func (f *fakeDocker) Close() error { return nil }

func (f *fakeDocker) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.containers)
}

// testEnv returns an Env over n fake hosts, with provisioning and sshd
// recorded (and failing where asked).
type testRig struct {
	env        Env
	hosts      []*fakeDocker
	provisions []string
	sshds      []string
	launched   []string
	removed    []string
	mu         sync.Mutex
}

func newRig(t *testing.T, n int, failProvision map[string]bool) *testRig {
	t.Helper()
	r := &testRig{}
	cfg := &cluster.Config{File: "/ops/cluster.toml", Container: cluster.Container{
		Lifetime: cluster.LifetimePersistent, Image: "reg/img:1", Name: "c", PullTimeout: time.Minute, SSHDPort: 2224,
		Env: map[string]string{"TOKEN": "s3cret"}}}
	byName := map[string]*fakeDocker{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("h%d", i+1)
		fd := &fakeDocker{name: name, containers: map[string]fakeContainer{}, image: "sha256:aaa", uploaded: map[string]os.FileMode{}}
		r.hosts = append(r.hosts, fd)
		byName[name] = fd
		cfg.Hosts = append(cfg.Hosts, cluster.Host{Name: name})
	}
	f := fleet.NewWithDial(func(_ context.Context, h cluster.Host) (transport.Conn, error) { return byName[h.Name], nil }, 2)
	record := func(list *[]string, h cluster.Host) {
		r.mu.Lock()
		defer r.mu.Unlock()
		*list = append(*list, h.Name)
		sort.Strings(*list)
	}
	r.env = Env{Fleet: f, Config: cfg, Log: log.New(io.Discard), Version: "test", RunID: "run1",
		Provision: func(_ context.Context, _ transport.Conn, h cluster.Host) (transport.Result, error) {
			record(&r.provisions, h)
			if failProvision[h.Name] {
				return transport.Result{}, fmt.Errorf("%s: setup script failed: apt-get: no network", h.Name)
			}
			return transport.Result{}, nil
		},
		StartSSHD: func(_ context.Context, _ transport.Conn, h cluster.Host) (bool, error) {
			record(&r.sshds, h)
			return false, nil
		},
		OnLaunch: func(h cluster.Host) { record(&r.launched, h) },
		OnRemove: func(h cluster.Host) { record(&r.removed, h) },
	}
	return r
}

func planOf(lt cluster.Lifetime, provision, teardown bool, actions ...Action) Plan {
	p := Plan{Lifetime: lt, Verdict: Proceed, Provision: provision, Teardown: teardown}
	for i, a := range actions {
		p.Hosts = append(p.Hosts, HostPlan{Host: fmt.Sprintf("h%d", i+1), Action: a})
	}
	return p
}

func TestApplyColdStart(t *testing.T) {
	r := newRig(t, 3, nil)
	s, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, true, false, Launch, Launch, Launch))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.Launched) != "[true true true]" || fmt.Sprint(r.provisions) != "[h1 h2 h3]" || fmt.Sprint(r.sshds) != "[h1 h2 h3]" {
		t.Errorf("launched %v provisioned %v sshd %v", s.Launched, r.provisions, r.sshds)
	}
	for _, h := range r.hosts {
		if h.count() != 1 {
			t.Errorf("%s: %d containers", h.name, h.count())
		}
		// The container's environment went in an uploaded 0600 file,
		// never in a command line.
		if h.uploaded["/tmp/cvs-env.AbCdEf1234/env"] != 0o600 {
			t.Errorf("%s: env file uploads %v", h.name, h.uploaded)
		}
		for _, l := range h.lines {
			if strings.Contains(l, "s3cret") {
				t.Errorf("%s: a container env value is in a command line: %s", h.name, l)
			}
		}
	}
}

func TestApplyAttachLaunchesNothing(t *testing.T) {
	r := newRig(t, 2, nil)
	for _, h := range r.hosts {
		h.containers["x"] = fakeContainer{name: "c", image: "sha256:aaa", running: true}
	}
	s, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, false, false, Attach, Attach))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.provisions) != 0 || len(r.launched) != 0 || fmt.Sprint(s.Launched) != "[false false]" {
		t.Errorf("attach provisioned %v launched %v", r.provisions, r.launched)
	}
	if fmt.Sprint(r.sshds) != "[h1 h2]" {
		t.Errorf("sshd must be ensured on every host: %v", r.sshds)
	}
	for _, h := range r.hosts {
		for _, l := range h.lines {
			if strings.HasPrefix(l, "docker run") || strings.HasPrefix(l, "docker rm") {
				t.Errorf("%s: attach ran %s", h.name, l)
			}
		}
	}
}

// A launch failing on one host removes what this run launched on the
// others and reports every failure; nothing is provisioned.
func TestApplyLaunchFailureRollsBack(t *testing.T) {
	r := newRig(t, 3, nil)
	r.hosts[1].failRun = "docker: Error response from daemon: pull access denied"
	// A container of the same name from another run must survive.
	r.hosts[2].containers["other"] = fakeContainer{name: "c-old", runID: "run0"}
	_, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, true, false, Launch, Launch, Launch))
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "launch" || len(se.Failures) != 1 || se.Failures[0].Host != "h2" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "pull access denied") || !se.Cleanup.OK() || fmt.Sprint(se.Cleanup.Removed) != "[h1 h3]" {
		t.Errorf("error/cleanup: %v", err)
	}
	if len(r.provisions) != 0 {
		t.Errorf("provisioned after a failed launch: %v", r.provisions)
	}
	if r.hosts[0].count() != 0 || r.hosts[2].count() != 1 {
		t.Errorf("containers left: h1 %d, h3 %d (want only the other run's)", r.hosts[0].count(), r.hosts[2].count())
	}
	if fmt.Sprint(r.removed) != "[h1 h3]" {
		t.Errorf("OnRemove told %v", r.removed)
	}
}

// A setup script failing on one host rolls the whole cold start back, so
// a persistent cluster is never left half-provisioned.
func TestApplyProvisionFailureRollsBack(t *testing.T) {
	r := newRig(t, 3, map[string]bool{"h1": true, "h3": true})
	_, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, true, false, Launch, Launch, Launch))
	var se *StageError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Stage, "provisioning") || len(se.Failures) != 2 {
		t.Fatalf("got %v", err)
	}
	if strings.Count(err.Error(), "h1: setup script failed") != 1 || !strings.Contains(err.Error(), "h3: setup script failed") {
		t.Errorf("each failing host once, by name:\n%v", err)
	}
	for _, h := range r.hosts {
		if h.count() != 0 {
			t.Errorf("%s: %d containers left after rollback", h.name, h.count())
		}
	}
	if len(r.sshds) != 0 {
		t.Errorf("sshd started after failed provisioning: %v", r.sshds)
	}
}

func TestApplyImageSkewAfterLaunch(t *testing.T) {
	r := newRig(t, 3, nil)
	r.hosts[2].image = "sha256:bbb"
	_, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, true, false, Launch, Launch, Launch))
	var se *StageError
	if !errors.As(err, &se) || !strings.Contains(se.Stage, "image check") || !strings.Contains(err.Error(), "sha256:bbb") {
		t.Fatalf("got %v", err)
	}
	for _, h := range r.hosts {
		if h.count() != 0 {
			t.Errorf("%s: skewed containers not rolled back", h.name)
		}
	}
}

func TestRollbackFailureIsReported(t *testing.T) {
	r := newRig(t, 2, map[string]bool{"h1": true})
	r.hosts[1].failRm = true
	_, err := Apply(context.Background(), r.env, planOf(cluster.LifetimePersistent, true, false, Launch, Launch))
	var se *StageError
	if !errors.As(err, &se) || se.Cleanup.OK() || len(se.Cleanup.Failed) != 1 || se.Cleanup.Failed[0].Host != "h2" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "LEFT BEHIND on h2") {
		t.Errorf("what is left behind is not said:\n%v", err)
	}
}

func TestTeardownPerLifetime(t *testing.T) {
	r := newRig(t, 2, nil)
	plan := planOf(cluster.LifetimePerRun, true, true, Launch, Launch)
	s, err := Apply(context.Background(), r.env, plan)
	if err != nil {
		t.Fatal(err)
	}
	// Interrupted runs tear down with a context that outlives the cancel.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := Teardown(context.WithoutCancel(ctx), r.env, plan, s)
	if !rep.OK() || fmt.Sprint(rep.Removed) != "[h1 h2]" || r.hosts[0].count()+r.hosts[1].count() != 0 {
		t.Fatalf("per_run teardown: %+v", rep)
	}
	persistent := planOf(cluster.LifetimePersistent, true, false, Launch, Launch)
	if rep := Teardown(context.Background(), r.env, persistent, s); rep != nil {
		t.Errorf("persistent teardown must be a no-op, got %+v", rep)
	}
}

func TestRemoveLabelledNeedsForceForPersistent(t *testing.T) {
	r := newRig(t, 3, nil)
	labels := func(lt string, file string) map[string]string {
		return map[string]string{LabelManaged: "true", LabelLifetime: lt, LabelCluster: file}
	}
	facts := []docker.Facts{
		{Host: "h1", Container: docker.ContainerFacts{State: docker.StateRunning, ID: "p1", Labels: labels("persistent", r.env.Config.File)}},
		{Host: "h2", Container: docker.ContainerFacts{State: docker.StateExited, ID: "r1", Labels: labels("per_run", r.env.Config.File)}},
		{Host: "h3", Container: docker.ContainerFacts{State: docker.StateRunning, ID: "f1"}},
	}
	for i, id := range []string{"p1", "r1", "f1"} {
		r.hosts[i].containers[id] = fakeContainer{name: "c", running: true}
	}
	removed, refused, failed := RemoveLabelled(context.Background(), r.env, facts, false)
	if fmt.Sprint(removed) != "[h2]" || len(refused) != 2 || len(failed) != 0 {
		t.Fatalf("without force: removed %v refused %v failed %v", removed, refused, failed)
	}
	if !strings.Contains(strings.Join(refused, "\n"), "h1: a persistent container") || !strings.Contains(strings.Join(refused, "\n"), "h3: not launched by cvs") {
		t.Errorf("refusals: %v", refused)
	}
	removed, refused, _ = RemoveLabelled(context.Background(), r.env, facts, true)
	if fmt.Sprint(removed) != "[h1 h2]" || len(refused) != 1 || r.hosts[0].count() != 0 || r.hosts[2].count() != 1 {
		t.Errorf("with force: removed %v refused %v; the foreign container must stay", removed, refused)
	}
}
