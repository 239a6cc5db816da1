//go:build e2e

package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

const quickSuite = `
[suites.quick]
[[suites.quick.steps]]
name = "hello"
run = "echo hello from $(hostname)"
`

// Issue 20: most HPC sites mount the SSH user's home folder from NFS on
// every node. The lab's stand-in: each host's ~/.cache is a bind mount of
// one folder of lab.SharedPath, which every host mounts. The cluster lock must not
// live there (every host would flock one file, and host B would answer
// "busy, held by" the run itself): a multi-host run goes through.
func TestSharedHomeFolderDoesNotBlockTheLock(t *testing.T) {
	runsIn(t, apiPass|slurmPass)
	const name = "e2e-sharedhome"
	useContainer(t, name)
	l := Lab(t)
	eachHost(t, func(h lab.Host) {
		script := `set -e; mkdir -p /root/.cache ` + lab.SharedPath + `/home-cache; mount --bind ` + lab.SharedPath + `/home-cache /root/.cache`
		if res, err := l.HostExec(testCtx(t, time.Minute), h.Name, "sh", "-c", script); err != nil {
			t.Fatalf("%s: share ~/.cache: %v %s", h.Name, err, res.Stderr)
		}
	})
	t.Cleanup(func() {
		cleanupCtx(time.Minute, func(ctx context.Context) {
			for _, h := range l.Hosts()[:labHosts] {
				l.HostExec(ctx, h.Name, "umount", "/root/.cache")
			}
			l.HostExec(ctx, l.Hosts()[0].Name, "rm", "-rf", lab.SharedPath+"/home-cache")
		})
	})
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: quickSuite})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "quick")
	if code != 0 {
		t.Fatalf("run with a shared ~/.cache: exit %d\n%s\n%s", code, out, clip(errOut))
	}
	for _, h := range hostNames(t) {
		if !strings.Contains(out, "hello from "+h) {
			t.Errorf("%s did not run its step:\n%s", h, out)
		}
	}
}

// Issue 20: a lock_dir that the hosts share (here lab.SharedPath, as an
// NFS folder would be) is named as such before any change, not reported
// as another cvs holding the lock.
func TestLockDirSharedByHostsIsNamed(t *testing.T) {
	runsIn(t, apiPass|slurmPass)
	const name = "e2e-shareddir"
	useContainer(t, name)
	dir := lab.SharedPath + "/locks"
	t.Cleanup(func() {
		cleanupCtx(time.Minute, func(ctx context.Context) { Lab(t).HostExec(ctx, "host1", "rm", "-rf", dir) })
	})
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: quickSuite,
		TopLevel: `lock_dir = "` + dir + `"`})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "quick")
	if code != 3 || !strings.Contains(errOut, "share the lock folder "+dir) || strings.Contains(errOut, "another cvs") {
		t.Fatalf("exit %d, want 3 naming the shared lock folder\n%s\n%s", code, out, clip(errOut))
	}
	assertNoneLeft(t, name, "after the refusal")
}

// Issue 20: cvs dies (SIGKILL) while one host's link is cut, in the middle
// of a step. That host's sshd cannot learn that the controller is gone
// until TCP gives up (hours), so the lock's holder there must release the
// lock by itself once the controller's heartbeat stops: the next run, once
// the link is back, is not refused as if the dead run still held it.
func TestDeadControllerBehindCutLinkReleasesTheLock(t *testing.T) {
	runsIn(t, apiPass)
	sshOnly(t, "the link cut is the SSH connection's; through Slurm, srun's death ends the step")
	const name = "e2e-deadctl"
	useContainer(t, name)
	l := Lab(t)
	suites := quickSuite + `
[suites.slow]
[[suites.slow.steps]]
name = "work"
timeout = "3m"
run = "echo working on $(hostname); sleep 90"
`
	file := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Suites: suites})
	if out, errOut, code := runCVS(t, "--cluster", file, "run", "quick"); code != 0 {
		t.Fatalf("cold start: exit %d\n%s\n%s", code, out, clip(errOut))
	}
	t.Cleanup(func() { cleanupCtx(time.Minute, func(ctx context.Context) { l.RestoreSSHLink(ctx, "host3") }) })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	slow := cvsCommand(ctx, t, "--cluster", file, "run", "slow")
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the step runs on host3: cut its link, then kill cvs.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		res, _ := l.HostDocker(testCtx(t, time.Minute), "host3", "top", name)
		if strings.Contains(res.Stdout, "sleep 90") {
			break
		}
		if time.Now().After(deadline) {
			slow.Process.Kill()
			t.Fatal("the slow step never started on host3")
		}
	}
	if err := l.CutSSHLink(testCtx(t, time.Minute), "host3"); err != nil {
		slow.Process.Kill()
		t.Fatal(err)
	}
	cvsProcess(t, slow).Signal(syscall.SIGKILL)
	slow.Wait()
	// The holder's silence limit is 30 s; TCP would retry far longer.
	time.Sleep(36 * time.Second)
	if err := l.RestoreSSHLink(testCtx(t, time.Minute), "host3"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCVS(t, "--cluster", file, "run", "quick")
	if code != 0 {
		t.Fatalf("the run after the dead controller: exit %d (the lock was still held?)\n%s\n%s", code, out, clip(errOut))
	}
	if !strings.Contains(out, "hello from host3") {
		t.Errorf("host3 did not run its step:\n%s", out)
	}
}
