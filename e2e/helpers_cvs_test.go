//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// clusterSpec is a cluster file for the lab with the container and suites a
// scenario needs.
type clusterSpec struct {
	Lifetime    string
	Name        string
	Image       string // default: the lab's workload image (no sshd)
	SetupScript string
	PullTimeout string
	Pin         string // [container] pin; default "prefer"
	MaxParallel int    // default 64
	Suites      string // TOML text of [suites.*] tables
	TopLevel    string // TOML lines of top-level keys (lock_dir = ...)
	// CleartextSecrets accepts secrets through Slurm (the Slurm pass).
	CleartextSecrets bool
}

// Suites the scenarios share.
const (
	// installSuite writes into the container's overlay.
	installSuite = `
[suites.install]
[[suites.install.steps]]
name = "install"
run = "mkdir -p /opt/cvs && hostname > /opt/cvs/installed"
`
	// testSuite reads what install wrote, then the head reaches every
	// host's container over SSH on port 2224.
	testSuite = `
[suites.test]
[[suites.test.steps]]
name = "read"
run = "echo \"found $(cat /opt/cvs/installed)\""
[[suites.test.steps]]
name = "peers"
on = "head"
run = """
for peer in $CVS_E2E_PEERS; do
  echo "peer $peer says $(ssh -o ConnectTimeout=5 "$peer" 'cat /opt/cvs/installed')"
done
"""
`
)

// writeCluster writes a cluster file for the lab and returns its path.
func writeCluster(t *testing.T, s clusterSpec) string {
	t.Helper()
	l := Lab(t)
	if s.Image == "" {
		s.Image = l.WorkloadImage()
	}
	if s.PullTimeout == "" {
		s.PullTimeout = "900s"
	}
	var hosts, addrs []string
	for _, h := range l.Hosts()[:labHosts] {
		hosts = append(hosts, fmt.Sprintf("%q", cvsHost(t, h.Name)))
		addrs = append(addrs, h.Addr.String())
	}
	engine := ""
	if viaSlurm {
		engine = "\n[engine]\nkind = \"slurm\"\n"
		if s.CleartextSecrets {
			engine += "cleartext_secrets = true\n"
		}
	}
	setup := ""
	if s.SetupScript != "" {
		setup = fmt.Sprintf("setup_script = %q\n", s.SetupScript)
	}
	if s.Pin != "" {
		setup += fmt.Sprintf("pin = %q\n", s.Pin)
	}
	if s.MaxParallel == 0 {
		s.MaxParallel = 64
	}
	text := fmt.Sprintf(`user = "root"
identity_file = %q
known_hosts = %q
host_key_check = "strict"
connect_timeout = "10s"
max_parallel = %d
%s
hosts = [%s]
%s
[env]
CVS_E2E_PEERS = %q

[container]
lifetime = %q
image = %q
name = %q
pull_timeout = %q
network = "host"
volumes = [%q]
%s
%s`, l.IdentityFile(), l.KnownHostsFile(), s.MaxParallel, s.TopLevel, strings.Join(hosts, ", "), engine, strings.Join(addrs, " "),
		s.Lifetime, s.Image, s.Name, s.PullTimeout, lab.AptRepoPath+":/cvs-apt:ro", setup, s.Suites)
	p := filepath.Join(t.TempDir(), "cluster.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// container is a container's real state on one host, read through the lab.
type container struct {
	ID, State, StartedAt, Image string
	Labels                      string
}

func inspect(t *testing.T, host, name string) (container, bool) {
	t.Helper()
	res, err := Lab(t).HostDocker(testCtx(t, time.Minute), host, "container", "inspect", "--format",
		"{{.Id}}|{{.State.Status}}|{{.State.StartedAt}}|{{.Image}}|{{json .Config.Labels}}", name)
	if err != nil {
		if strings.Contains(res.Stderr, "No such") {
			return container{}, false
		}
		t.Fatalf("%s: docker inspect %s: %v", host, name, err)
	}
	f := strings.SplitN(strings.TrimSpace(res.Stdout), "|", 5)
	if len(f) != 5 {
		t.Fatalf("%s: docker inspect: %q", host, res.Stdout)
	}
	return container{ID: f[0], State: f[1], StartedAt: f[2], Image: f[3], Labels: f[4]}, true
}

// inspectAll returns the container on every lab host (missing ones are
// zero values with ok=false).
func inspectAll(t *testing.T, name string) ([]container, []bool) {
	t.Helper()
	var cs []container
	var oks []bool
	for _, h := range Lab(t).Hosts()[:labHosts] {
		c, ok := inspect(t, h.Name, name)
		cs, oks = append(cs, c), append(oks, ok)
	}
	return cs, oks
}

// removeEverywhere force-removes a container on every host, through the
// lab. It uses its own context: it also runs in t.Cleanup, when the test's
// context has already ended.
func removeEverywhere(t *testing.T, name string) {
	t.Helper()
	cleanupCtx(2*time.Minute, func(ctx context.Context) {
		for _, h := range Lab(t).Hosts()[:labHosts] {
			Lab(t).HostDocker(ctx, h.Name, "rm", "-f", name)
		}
	})
}

// useContainer removes any container called name from every host now and
// again when the test ends, so each scenario starts and ends clean.
func useContainer(t *testing.T, name string) {
	t.Helper()
	removeEverywhere(t, name)
	t.Cleanup(func() { removeEverywhere(t, name) })
}

// assertNoneLeft fails the test when any host still has a container called
// name; when says at which point of the scenario.
func assertNoneLeft(t *testing.T, name, when string) {
	t.Helper()
	if _, oks := inspectAll(t, name); slices.Contains(oks, true) {
		t.Errorf("%s: a container %q remains on some host: %v", when, name, oks)
	}
}

// eachHost runs fn for every lab host at once.
func eachHost(t *testing.T, fn func(h lab.Host)) {
	var wg sync.WaitGroup
	for _, h := range Lab(t).Hosts()[:labHosts] {
		wg.Add(1)
		go func() { defer wg.Done(); fn(h) }()
	}
	wg.Wait()
}

func hostNames(t *testing.T) []string {
	var out []string
	for _, h := range Lab(t).Hosts()[:labHosts] {
		out = append(out, h.Name)
	}
	return out
}

// cvsHost is how cluster files, and so cvs's output, name a lab host:
// its address over SSH, its node name through Slurm.
func cvsHost(t *testing.T, host string) string {
	if viaSlurm {
		return host
	}
	return addrOf(t, host)
}

// cutOff makes a lab host unreachable the way the pass reaches hosts: its
// sshd stopped over SSH; through Slurm its slurmd stopped (Slurm keeps the
// node allocatable for about 30 s, and a step there fails to launch after
// about 10 s). restore undoes it.
func cutOff(t *testing.T, host string) (restore func()) {
	t.Helper()
	l := Lab(t)
	stop, start := l.StopSSHD, l.StartSSHD
	if viaSlurm {
		stop, start = l.StopSlurmd, l.StartSlurmd
	}
	if err := stop(testCtx(t, time.Minute), host); err != nil {
		t.Fatal(err)
	}
	return func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) {
			if err := start(ctx, host); err != nil {
				t.Errorf("%s: %v", host, err)
			}
		})
	}
}

// addrOf is a lab host's address (how the containers reach each other).
func addrOf(t *testing.T, host string) string {
	h, err := Lab(t).Host(host)
	if err != nil {
		t.Fatal(err)
	}
	return h.Addr.String()
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// cleanupCtx runs fn with a fresh context, for t.Cleanup functions (the
// test's own context has ended by then).
func cleanupCtx(d time.Duration, fn func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fn(ctx)
}
