//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// These tests check that the lab is what the cvs scenarios assume: real,
// separate hosts. They look at the hosts through the lab (docker exec, or the
// OpenSSH client with the lab key), never through cvs.

func TestLabHostsAcceptLabKeyOverSSH(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, time.Minute)
	if n := len(l.Hosts()); n < labHosts {
		t.Fatalf("lab has %d hosts, want at least %d", n, labHosts)
	}
	for _, h := range l.Hosts() {
		res, err := l.SSH(ctx, h.Name, "sh", "-c", "hostname; id -u")
		if err != nil {
			t.Fatalf("ssh root@%s with the lab key and strict known_hosts: %v", h.Addr, err)
		}
		if got, want := strings.Fields(res.Stdout), []string{h.Name, "0"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: hostname, uid = %q, want %q", h.Name, got, want)
		}
	}
}

func TestLabHostsAreDistinctMachines(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, time.Minute)
	addrs, ids := map[string]string{}, map[string]string{}
	for _, h := range l.Hosts() {
		res, err := l.HostExec(ctx, h.Name, "ip", "-4", "-o", "addr", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Stdout, " "+h.Addr.String()+"/") {
			t.Errorf("%s: eth0 has %q, want address %s", h.Name, res.Stdout, h.Addr)
		}
		if other, dup := addrs[h.Addr.String()]; dup {
			t.Errorf("%s and %s share address %s", h.Name, other, h.Addr)
		}
		addrs[h.Addr.String()] = h.Name

		res, err = l.HostDocker(ctx, h.Name, "version", "--format", "{{.Server.Version}}")
		if err != nil || strings.TrimSpace(res.Stdout) == "" {
			t.Fatalf("%s: inner dockerd does not answer docker version: %v", h.Name, err)
		}
		res, err = l.HostDocker(ctx, h.Name, "info", "--format", "{{.ID}}")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSpace(res.Stdout)
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share one Docker daemon (ID %s)", h.Name, other, id)
		}
		ids[id] = h.Name
	}
}

func TestLabHostsPullFromRegistry(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 3*time.Minute)
	h := l.Hosts()[1].Name
	// Start from an empty image store for these tags, so the run must pull.
	l.HostDocker(ctx, h, "rmi", "--force", l.WorkloadImage(), l.WorkloadImage2())

	res, err := l.HostDocker(ctx, h, "run", "--rm", l.WorkloadImage(), "cat", "/etc/cvs-lab-workload")
	if err != nil {
		t.Fatalf("docker run of the workload image (pulling it): %v", err)
	}
	if got := strings.TrimSpace(res.Stdout); got != "1" {
		t.Errorf("workload image marker = %q, want 1", got)
	}
	if !strings.Contains(res.Stderr, "Pulling from") {
		t.Errorf("docker run did not pull the image from the registry; stderr: %s", res.Stderr)
	}
	digests, err := l.HostDocker(ctx, h, "image", "inspect", "--format", "{{.RepoDigests}}", l.WorkloadImage())
	if err != nil || !strings.Contains(digests.Stdout, l.Registry()+"/") {
		t.Errorf("pulled image has no digest from the lab registry: %q, %v", digests.Stdout, err)
	}

	if _, err := l.HostDocker(ctx, h, "pull", "--quiet", l.WorkloadImage2()); err != nil {
		t.Fatal(err)
	}
	id1, _ := l.ImageID(ctx, h, l.WorkloadImage())
	id2, _ := l.ImageID(ctx, h, l.WorkloadImage2())
	if id1 == "" || id1 == id2 {
		t.Errorf("workload images must have distinct IDs: %q and %q", id1, id2)
	}
}

func TestLabWorkloadImageHasNoSSHD(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 3*time.Minute)
	h := l.Hosts()[0].Name
	res, err := l.HostDocker(ctx, h, "run", "--rm", l.WorkloadImage(),
		"sh", "-c", "command -v sshd || test -e /usr/sbin/sshd")
	var ee *lab.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 1 {
		t.Fatalf("workload image must not contain sshd: %v, stdout %q", err, res.Stdout)
	}
}

func TestLabAptRepoInstallsSSHDOffline(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 3*time.Minute)
	h := l.Hosts()[0].Name
	// --network none: the only way to the packages is the lab repository.
	res, err := l.HostDocker(ctx, h, "run", "--rm", "--network", "none",
		"--volume", lab.AptRepoPath+":/cvs-apt:ro", l.WorkloadImage(),
		"sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server && test -x /usr/sbin/sshd")
	if err != nil {
		t.Fatalf("apt-get install openssh-server from the lab repository: %v\n%s", err, res.Stdout)
	}
}

func TestLabStatus(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	st, err := l.Status(testCtx(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Up || !st.Daemon.Running || !st.Registry.Running || st.ClusterFile == "" {
		t.Errorf("status = %+v, want up with daemon, registry and cluster file", st)
	}
	for _, h := range st.Hosts {
		if h.State != "running" || !h.SSHD || !h.Dockerd {
			t.Errorf("%s: %+v, want running with sshd and dockerd up", h.Name, h)
		}
	}
}

func TestLabFaultSSHDStop(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	down, up := l.Hosts()[1].Name, l.Hosts()[0].Name
	if err := l.StopSSHD(ctx, down); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.StartSSHD(ctx, down) }) })

	_, err := l.SSH(ctx, down, "true")
	var ee *lab.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 255 || !strings.Contains(ee.Stderr, "refused") {
		t.Errorf("ssh to %s with its sshd stopped: %v, want connection refused (exit 255)", down, err)
	}
	if _, err := l.SSH(ctx, up, "true"); err != nil {
		t.Errorf("ssh to %s must still work: %v", up, err)
	}
	if _, err := l.HostExec(ctx, down, "true"); err != nil {
		t.Errorf("the host itself must still run: %v", err)
	}
	if err := l.StartSSHD(ctx, down); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SSH(ctx, down, "true"); err != nil {
		t.Errorf("ssh to %s after StartSSHD: %v", down, err)
	}
}

func TestLabFaultDockerdStop(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	h := l.Hosts()[2].Name
	if err := l.StopDockerd(ctx, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.StartDockerd(ctx, h) }) })

	res, err := l.SSH(ctx, h, "docker", "version")
	var ee *lab.ExitError
	if !errors.As(err, &ee) || ee.ExitCode == 255 || !strings.Contains(res.Stderr, "Cannot connect to the Docker daemon") {
		t.Errorf("docker version over ssh on %s with dockerd stopped: %v, want ssh to work and docker to fail", h, err)
	}
	if err := l.StartDockerd(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SSH(ctx, h, "docker", "version"); err != nil {
		t.Errorf("docker version on %s after StartDockerd: %v", h, err)
	}
}

func TestLabFaultHostPause(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	h := l.Hosts()[1].Name
	if err := l.PauseHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.UnpauseHost(ctx, h) }) })

	// SSHArgs sets ConnectTimeout=5, which also bounds the banner exchange.
	start := time.Now()
	_, err := l.SSH(ctx, h, "true")
	var ee *lab.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 255 || !strings.Contains(ee.Stderr, "timed out") {
		t.Errorf("ssh to paused %s: %v, want a timeout (exit 255)", h, err)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("ssh to paused %s failed after %s; a hung host must make the client wait", h, d)
	}
	if err := l.UnpauseHost(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SSH(ctx, h, "true"); err != nil {
		t.Errorf("ssh to %s after UnpauseHost: %v", h, err)
	}
}

func TestLabFaultHostKeyRotate(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	h := l.Hosts()[0].Name
	if _, err := l.RotateHostKey(ctx, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.RefreshKnownHosts(ctx) }) })

	_, err := l.SSH(ctx, h, "true")
	var ee *lab.ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 255 || !strings.Contains(ee.Stderr, "Host key verification failed") {
		t.Errorf("strict ssh to %s after its host key changed: %v, want host key verification to fail", h, err)
	}
	if err := l.RefreshKnownHosts(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SSH(ctx, h, "true"); err != nil {
		t.Errorf("ssh to %s after RefreshKnownHosts: %v", h, err)
	}
}

func TestLabFaultRetag(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 3*time.Minute)
	skewed, normal := l.Hosts()[0].Name, l.Hosts()[1].Name
	ref := l.WorkloadImage()
	if err := l.Retag(ctx, skewed, ref, l.WorkloadImage2()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) { l.HostDocker(ctx, skewed, "pull", "--quiet", ref) })
	})

	if _, err := l.HostDocker(ctx, normal, "pull", "--quiet", ref); err != nil {
		t.Fatal(err)
	}
	got, _ := l.ImageID(ctx, skewed, ref)
	want2, _ := l.ImageID(ctx, skewed, l.WorkloadImage2())
	normalID, _ := l.ImageID(ctx, normal, ref)
	if got == "" || got != want2 || got == normalID {
		t.Errorf("after Retag, %s on %s = %s (image 2 is %s), on %s = %s: want image 2 on %s only",
			ref, skewed, got, want2, normal, normalID, skewed)
	}
	res, err := l.HostDocker(ctx, skewed, "run", "--rm", ref, "cat", "/etc/cvs-lab-workload")
	if err != nil || strings.TrimSpace(res.Stdout) != "2" {
		t.Errorf("running %s on %s: %q, %v; want the other image's marker 2", ref, skewed, res.Stdout, err)
	}
}

func TestLabFaultRegistry(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 4*time.Minute)
	h := l.Hosts()[2].Name
	ref := l.WorkloadImage2()
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.StartRegistry(ctx) }) })
	// Both workload images share their base layer: drop both, or a pull
	// of ref would only fetch its small top layer.
	// A container left on the host (a reused lab's demo) would keep the
	// base layer too.
	// An image another test built FROM the workload would keep its layers
	// too: drop every image of the host (the registry has them all).
	forget := func() {
		l.HostExec(ctx, h, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; docker rmi --force $(docker images -q) 2>/dev/null; true")
		l.HostDocker(ctx, h, "rmi", "--force", ref, l.WorkloadImage())
	}

	if err := l.StopRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	forget()
	res, err := l.HostDocker(ctx, h, "pull", ref)
	if err == nil || !strings.Contains(res.Stderr, "connection refused") {
		t.Errorf("pull with the registry down: %v, stderr %q; want connection refused", err, res.Stderr)
	}
	if err := l.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.HostDocker(ctx, h, "pull", "--quiet", ref); err != nil {
		t.Fatalf("pull after StartRegistry: %v", err)
	}

	if err := l.SlowRegistry(ctx, "256kbit"); err != nil {
		t.Fatal(err)
	}
	forget()
	start := time.Now()
	res, err = l.HostExec(ctx, h, "timeout", "5", "docker", "pull", "--quiet", ref)
	if err == nil {
		t.Errorf("pull through a 256kbit registry finished in %s; want it still running after 5s", time.Since(start))
	}
	if err := l.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.HostDocker(ctx, h, "pull", "--quiet", ref); err != nil {
		t.Fatalf("pull after the throttle is lifted: %v", err)
	}
}

// Issue 23: a machine where a stock Docker daemon runs (it manages iptables)
// has the FORWARD policy DROP, and with br_netfilter the lab's bridged
// traffic goes through FORWARD: the lab's hosts could not reach each other
// (the demo's peers step timed out, the Slurm lab never came up). The
// stand-in: a DROP at the end of FORWARD for this lab's bridge alone, which
// is what the policy does to it, without touching the machine's other
// traffic (or the other labs of a test run). The lab's own accept rule,
// inserted at the top, must let its hosts talk.
func TestLabHostsReachEachOtherWhereForwardingIsDropped(t *testing.T) {
	runsIn(t, apiPass)
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil || strings.TrimSpace(string(b)) != "1" {
		// Without br_netfilter bridged traffic never meets FORWARD: the
		// stand-in could not drop anything, and the test could not fail.
		t.Skipf("bridged traffic does not go through iptables here (bridge-nf-call-iptables: %q, %v)", b, err)
	}
	drop := []string{"FORWARD", "-i", l.Bridge(), "-o", l.Bridge(), "-j", "DROP", "-m", "comment", "--comment", "cvs-e2e: FORWARD policy DROP"}
	if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-A"}, drop...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables -A %s: %v\n%s", strings.Join(drop, " "), err, out)
	}
	t.Cleanup(func() { exec.Command("iptables", append([]string{"-w", "-D"}, drop...)...).Run() })
	hosts := l.Hosts()
	for i, from := range hosts {
		to := hosts[(i+1)%len(hosts)]
		res, err := l.HostExec(ctx, from.Name, "timeout", "5", "bash", "-c", "</dev/tcp/"+to.Addr.String()+"/22")
		if err != nil {
			t.Errorf("%s cannot reach %s's sshd (%s:22) when FORWARD drops: %v %s", from.Name, to.Name, to.Addr, err, res.Stderr)
		}
	}
}
