package lab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/internal/golden"

	"github.com/cvs-tool/cvs/cluster"
)

// Unit tests: no root, no Docker, no network. The lab itself is exercised
// by the e2e tier (go test -tags e2e ./e2e/...).

func newTestLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConfigDefaults(t *testing.T) {
	l := newTestLab(t, Config{})
	if l.Dir() != DefaultDir {
		t.Errorf("Dir = %q, want %q", l.Dir(), DefaultDir)
	}
	if got := l.Registry(); got != "172.29.0.1:5000" {
		t.Errorf("Registry = %q", got)
	}
	if got := l.WorkloadImage(); got != "172.29.0.1:5000/cvs-lab/workload:1" {
		t.Errorf("WorkloadImage = %q", got)
	}
	if len(l.bridgeName()) > 15 {
		t.Errorf("bridge name %q is longer than an interface name may be", l.bridgeName())
	}
}

func TestConfigRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"subnet too small": {Subnet: netip.MustParsePrefix("10.1.2.0/25")},
		"ipv6 subnet":      {Subnet: netip.MustParsePrefix("fd00::/64")},
		"dir too long":     {Dir: "/tmp/" + strings.Repeat("x", 90)},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestHostAddresses(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		i      int
		want   string
	}{
		{"172.29.0.0/24", 1, "172.29.0.11"},
		{"172.29.0.0/24", 3, "172.29.0.13"},
		{"172.29.0.0/24", MaxHosts, "172.29.0.74"},
		{"10.99.0.0/16", 2, "10.99.0.12"},
		{"10.99.7.9/24", 1, "10.99.7.11"}, // host bits are masked off
	} {
		l := newTestLab(t, Config{Subnet: netip.MustParsePrefix(tc.subnet)})
		h := l.hostAt(tc.i)
		if h.Addr.String() != tc.want {
			t.Errorf("%s host %d = %s, want %s", tc.subnet, tc.i, h.Addr, tc.want)
		}
		if !l.cfg.Subnet.Contains(h.Addr) {
			t.Errorf("%s host %d = %s is outside the subnet", tc.subnet, tc.i, h.Addr)
		}
	}
	l := newTestLab(t, Config{})
	if h := l.hostAt(2); h.Name != "host2" || h.Container != "cvs-lab-host2" {
		t.Errorf("hostAt(2) = %+v", h)
	}
}

func TestHostLookup(t *testing.T) {
	l := newTestLab(t, Config{})
	l.st.Hosts = []Host{l.hostAt(1), l.hostAt(2)}
	for _, ref := range []string{"host2", "172.29.0.12", "cvs-lab-host2"} {
		h, err := l.Host(ref)
		if err != nil || h.Name != "host2" {
			t.Errorf("Host(%q) = %+v, %v", ref, h, err)
		}
	}
	if _, err := l.Host("host9"); err == nil || !strings.Contains(err.Error(), "host1, host2") {
		t.Errorf("Host(host9) error = %v, want the list of hosts", err)
	}
}

func testClusterParams() clusterParams {
	l, _ := New(Config{})
	return clusterParams{
		Identity:   "/var/tmp/cvs-lab/keys/id_ed25519",
		KnownHosts: "/var/tmp/cvs-lab/known_hosts",
		Hosts:      []Host{l.hostAt(1), l.hostAt(2), l.hostAt(3)},
		Image:      l.WorkloadImage(),
	}
}

func TestClusterFileGolden(t *testing.T) {
	golden.Check(t, "cluster.toml.golden", []byte(renderClusterFile(testClusterParams())))
}

// The cluster file must pass cvs's own strict loader: every key known.
func TestClusterFileLoads(t *testing.T) {
	for _, slurm := range []bool{false, true} {
		t.Run(fmt.Sprintf("slurm=%v", slurm), func(t *testing.T) { clusterFileLoads(t, slurm) })
	}
}

func clusterFileLoads(t *testing.T, slurm bool) {
	dir := t.TempDir()
	p := testClusterParams()
	p.Slurm = slurm
	p.Identity = filepath.Join(dir, "id_ed25519")
	p.KnownHosts = filepath.Join(dir, "known_hosts")
	for _, f := range []string{p.Identity, p.KnownHosts} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(path, []byte(renderClusterFile(p)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := cluster.LoadWith(path, cluster.LoadOptions{SSHConfig: "none", Home: dir})
	if err != nil {
		t.Fatalf("cvs rejects the lab's cluster file: %v", err)
	}
	want, engine := p.Hosts[0].Addr.String(), cluster.EngineSSH
	if slurm {
		want, engine = p.Hosts[0].Name, cluster.EngineSlurm
	}
	if cfg.Hosts[0].Name != want || cfg.Engine.Kind != engine {
		t.Errorf("first host %q, engine %q: want %q, %q", cfg.Hosts[0].Name, cfg.Engine.Kind, want, engine)
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:      `"/a/b"`,
		`say "hi"`:  `"say \"hi\""`,
		`C:\x`:      `"C:\\x"`,
		"tab\there": `"tab\u0009here"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestKnownHosts(t *testing.T) {
	l := newTestLab(t, Config{})
	hosts := []Host{l.hostAt(1), l.hostAt(2)}
	got := knownHosts(hosts, map[string][]string{
		"host1": {"ssh-ed25519 AAAA1"},
		"host2": {"ecdsa-sha2-nistp256 BBBB2", "ssh-ed25519 AAAA2"},
	})
	want := "# cvs lab host keys, read from the hosts by cvs-lab up\n" +
		"172.29.0.11 ssh-ed25519 AAAA1\n" +
		"172.29.0.12 ecdsa-sha2-nistp256 BBBB2\n" +
		"172.29.0.12 ssh-ed25519 AAAA2\n"
	if got != want {
		t.Errorf("known_hosts:\n%s\nwant:\n%s", got, want)
	}
}

// Cache keys: a recipe change rebuilds what depends on it, and only that.
func TestCacheKeys(t *testing.T) {
	base := newTestLab(t, Config{}).cacheKeys()
	if again := newTestLab(t, Config{}).cacheKeys(); again != base {
		t.Fatalf("cache keys are not stable: %+v, %+v", base, again)
	}
	other := newTestLab(t, Config{Suite: "trixie"}).cacheKeys()
	if other.base == base.base || other.host == base.host || other.workload == base.workload || other.apt == base.apt {
		t.Errorf("a new suite must change every key: %+v vs %+v", other, base)
	}
	saved := hostPackages
	t.Cleanup(func() { hostPackages = saved })
	hostPackages = append(append([]string(nil), saved...), "curl")
	changed := newTestLab(t, Config{}).cacheKeys()
	if changed.host == base.host {
		t.Error("a new host package must change the host image key")
	}
	if changed.workload != base.workload || changed.apt != base.apt || changed.base != base.base {
		t.Error("a host package must not rebuild the workload image, apt repository or base")
	}
	// Different dirs share image recipes but not bridges or cgroups.
	a, b := newTestLab(t, Config{Dir: "/tmp/lab-a"}), newTestLab(t, Config{Dir: "/tmp/lab-b"})
	if a.bridgeName() == b.bridgeName() || a.cgroupParent() == b.cgroupParent() {
		t.Error("two lab dirs must not share a bridge or cgroup name")
	}
}

func TestRecipesEmbedded(t *testing.T) {
	for _, name := range []string{"host-build.sh", "apt-repo-build.sh", "cvs-lab-init", "cvs-lab-svc", "sshd-cvs-lab.conf", "workload-sources.list"} {
		if recipe(name) == "" {
			t.Errorf("recipe %s is empty", name)
		}
	}
	if !strings.Contains(recipe("workload-sources.list"), "file:/cvs-apt") {
		t.Error("workload apt sources must point at the lab repository only")
	}
}

func TestProcHelpers(t *testing.T) {
	if !containsArg([]byte("dockerd\x00--insecure-registry\x00172.29.0.1:5000\x00"), "172.29.0.1:5000") {
		t.Error("containsArg missed a whole argument")
	}
	if containsArg([]byte("dockerd\x00172.29.0.1:50001\x00"), "172.29.0.1:5000") {
		t.Error("containsArg matched a prefix")
	}
	if !isZombieStat([]byte("123 (docker (x)) Z 1 2 3")) || isZombieStat([]byte("123 (dockerd) S 1 2 3")) {
		t.Error("isZombieStat")
	}
	if got := unescapeMount(`/var/tmp/a\040b`); got != "/var/tmp/a b" {
		t.Errorf("unescapeMount = %q", got)
	}
	if procAlive(os.Getpid(), "no-such-marker-in-cmdline") {
		t.Error("procAlive must require the marker")
	}
	if pid, err := readPID(filepath.Join(t.TempDir(), "none.pid")); pid != 0 || err != nil {
		t.Errorf("readPID of a missing file = %d, %v", pid, err)
	}
}

// A lab owns the processes started with its folder on their command line
// (not another lab's whose folder merely starts with the same name) and
// those in its cgroups; not others.
func TestOwnsOnlyItsProcesses(t *testing.T) {
	l := newTestLab(t, Config{Dir: "/var/tmp/cvs-owns-lab"})
	mine := exec.Command("sh", "-c", "sleep 30", "/var/tmp/cvs-owns-lab/run/x")
	other := exec.Command("sh", "-c", "sleep 30", "/var/tmp/cvs-owns-lab2/run/x")
	for _, c := range []*exec.Cmd{mine, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	if !l.Owns(mine.Process.Pid) {
		t.Error("a process with the lab's folder on its command line is not owned")
	}
	if l.Owns(other.Process.Pid) || l.Owns(os.Getpid()) {
		t.Error("another lab's process (or the test's) is owned")
	}
	if !cgroupOwned("9:pids:/"+l.cgroupParent()+"/0123abc\n", l.cgroupParent()) ||
		!cgroupOwned("0::/"+l.cgroupParent()+"-host1/x\n", l.cgroupParent()) ||
		cgroupOwned("9:pids:/"+l.cgroupParent()+"0/x\n", l.cgroupParent()) {
		t.Error("cgroup ownership")
	}
}

// pollRegistry waits for the answer its caller accepts, says when the
// registry exited, and gives the last failure when time runs out.
func TestPollRegistry(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" || calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	wants401 := func(r *http.Response) bool { return r.StatusCode == http.StatusUnauthorized }
	if err := pollRegistry(ctx, addr, 10*time.Second, wants401, nil); err != nil || calls.Load() != 3 {
		t.Errorf("answered on the third request: %v after %d", err, calls.Load())
	}
	wants200 := func(r *http.Response) bool { return r.StatusCode == http.StatusOK }
	if err := pollRegistry(ctx, addr, 10*time.Second, wants200, func() bool { return true }); !errors.Is(err, errRegistryExited) {
		t.Errorf("exited: %v, want errRegistryExited", err)
	}
	if err := pollRegistry(ctx, addr, 300*time.Millisecond, wants200, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("out of time: %v, want the last answer (401)", err)
	}
}
