//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// The persistent workflow of the seed, and every way it must refuse. One
// test, in order, because each part starts from the state the previous one
// left (as an operator's cluster does). Every check reads the hosts' real
// state through the lab, not through cvs.
func TestPersistentInstallThenTest(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-persistent"
	// With --network host, a demo's container (the lab cluster file's
	// cvs-lab) would hold port 2224 on every host.
	removeEverywhere(t, "cvs-lab")
	useContainer(t, name)
	// pin = "off": step 3 moves the tag on the hosts only, which a pinned
	// run (TestPinnedTagRepushedMidRun) rightly ignores.
	file := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Pin: "off", Suites: installSuite + testSuite})

	// 1. cold start on an image without sshd: launch, the default setup
	// script installs openssh-server from the lab's apt repository, sshd
	// starts, the install step writes into the overlay.
	out, errOut, code := runCVS(t, "--cluster", file, "run", "install")
	if code != 0 {
		t.Fatalf("cvs run install: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "cold start") || !strings.Contains(errOut, "provisioning") {
		t.Errorf("install did not cold-start and provision:\n%s\n%s", out, errOut)
	}
	before, oks := inspectAll(t, name)
	for i, h := range hostNames(t) {
		if !oks[i] || before[i].State != "running" || !strings.Contains(before[i].Labels, `"cvs.lifetime":"persistent"`) {
			t.Fatalf("%s: container after install: %+v (exists %v)", h, before[i], oks[i])
		}
		res, err := Lab(t).HostDocker(testCtx(t, time.Minute), h, "exec", name, "sh", "-c", "test -x /usr/sbin/sshd && cat /opt/cvs/installed")
		if err != nil || strings.TrimSpace(res.Stdout) != h {
			t.Errorf("%s: sshd not installed or install step's file missing: %q %v", h, res.Stdout, err)
		}
	}

	// 2. attach: same containers (ID, StartedAt), sshd setup skipped, the
	// test step reads what install wrote, the head reaches every container
	// over SSH on port 2224.
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 0 {
		t.Fatalf("cvs run test: exit %d\n%s\n%s", code, out, errOut)
	}
	after, _ := inspectAll(t, name)
	for i, h := range hostNames(t) {
		if after[i].ID != before[i].ID || after[i].StartedAt != before[i].StartedAt {
			t.Errorf("%s: container changed on attach: %+v -> %+v", h, before[i], after[i])
		}
		if !strings.Contains(out, "found "+h) {
			t.Errorf("the test step on %s did not read what install wrote:\n%s", h, out)
		}
		if !strings.Contains(out, "peer "+addrOf(t, h)+" says "+h) {
			t.Errorf("the head did not reach %s's container over SSH on 2224:\n%s", h, out)
		}
	}
	if strings.Count(errOut, "setup skipped") != labHosts || strings.Contains(errOut, "provisioning") {
		t.Errorf("attach must skip sshd setup and provisioning everywhere:\n%s", errOut)
	}

	// 2a. exec --in-container reaches the same containers; its time limit
	// stops the command inside the container, not only the docker client.
	out, _, code = runCVS(t, "--cluster", file, "exec", "--in-container", "--group", "--", "cat", "/opt/cvs/installed")
	if code != 0 || strings.Count(out, "(1)") != labHosts {
		t.Errorf("exec --in-container: exit %d\n%s", code, out)
	}
	_, errOut, code = runCVS(t, "--cluster", file, "exec", "--in-container", "--timeout", "1s", "--", "sleep", "313")
	if code != 1 || !strings.Contains(errOut, "command sleep 313: timed out") {
		t.Errorf("exec --in-container --timeout: exit %d\n%s", code, errOut)
	}
	time.Sleep(time.Second)
	for _, h := range hostNames(t) {
		res, _ := Lab(t).HostDocker(testCtx(t, time.Minute), h, "top", name)
		if strings.Contains(res.Stdout, "sleep 313") {
			t.Errorf("%s: the timed-out command still runs in the container:\n%s", h, res.Stdout)
		}
	}

	// 2b. sshd died in host2's container: the next attach starts it there
	// only; status saw it stopped.
	if _, err := Lab(t).HostDocker(testCtx(t, time.Minute), "host2", "exec", name, "sh", "-c", "kill $(cat /run/cvs-sshd.pid)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if doc, _ := statusJSONFile(t, file); doc.Hosts[1].Container.SSHD != "not-listening" || doc.Hosts[0].Container.SSHD != "listening" {
		t.Errorf("status after sshd died on host2: %+v", doc.Hosts)
	}
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 0 || strings.Count(errOut, "setup skipped") != labHosts-1 || !strings.Contains(errOut, "sshd started on port 2224 host="+cvsHost(t, "host2")) {
		t.Fatalf("sshd restart on host2 only: exit %d\n%s\n%s", code, out, errOut)
	}

	// 3. stale tag: the configured tag now names another image on every
	// host; the run proceeds on the same containers and warns.
	l := Lab(t)
	eachHost(t, func(h lab.Host) {
		if err := l.Retag(testCtx(t, 2*time.Minute), h.Name, l.WorkloadImage(), l.WorkloadImage2()); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) {
			for _, h := range l.Hosts()[:labHosts] {
				l.HostDocker(ctx, h.Name, "pull", "--quiet", l.WorkloadImage())
			}
		})
	})
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 0 || !strings.Contains(out+errOut, "stale overlay") {
		t.Fatalf("stale tag: exit %d, want 0 with a stale-overlay warning\n%s\n%s", code, out, errOut)
	}
	newID, _ := l.ImageID(testCtx(t, time.Minute), "host1", l.WorkloadImage())
	if !strings.Contains(out+errOut, short(newID)) || !strings.Contains(out+errOut, short(before[0].Image)) {
		t.Errorf("the warning must name both image IDs (%s, %s):\n%s%s", short(before[0].Image), short(newID), out, errOut)
	}
	eachHost(t, func(h lab.Host) {
		l.HostDocker(testCtx(t, 2*time.Minute), h.Name, "pull", "--quiet", l.WorkloadImage())
	})

	// 4. one host unreachable: exit 3 before any change, the same refusal
	// whichever way hosts are reached (through Slurm, the lock's batch is
	// aborted by the node's failed launch: the others' locks are taken
	// again, and the node is left to the probe, as over SSH).
	restore := cutOff(t, "host2")
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	restore()
	if code != 3 || !strings.Contains(out, "preflight-failed") || !strings.Contains(errOut, "1 of 3 host(s) cannot be used ("+cvsHost(t, "host2")+"); nothing was changed") {
		t.Fatalf("unreachable host: exit %d, want 3, preflight-failed naming it\n%s\n%s", code, out, errOut)
	}
	assertUnchanged(t, name, before)

	// 5. skew: host3's container runs another image under the same name.
	restore = replaceContainer(t, "host3", name, l.WorkloadImage2())
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 5 || !strings.Contains(out+errOut, "image skew") {
		t.Fatalf("skew: exit %d, want 5\n%s\n%s", code, out, errOut)
	}
	id2, _ := l.ImageID(testCtx(t, time.Minute), "host3", l.WorkloadImage2())
	for _, want := range []string{cvsHost(t, "host3"), short(id2), short(before[0].Image)} {
		if !strings.Contains(out, want) {
			t.Errorf("the skew table lacks %s:\n%s", want, out)
		}
	}
	restore()

	// 6. partial: the container is gone from host2 only → exit 5 naming
	// host2, and the other hosts' containers are untouched.
	if _, err := l.HostDocker(testCtx(t, time.Minute), "host2", "rm", "-f", name); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 5 || !strings.Contains(out+errOut, "absent on "+cvsHost(t, "host2")) || !strings.Contains(out+errOut, "partial persistence") {
		t.Fatalf("partial: exit %d, want 5 naming host2\n%s\n%s", code, out, errOut)
	}
	now, oks := inspectAll(t, name)
	for i, h := range hostNames(t) {
		if h == "host2" {
			if oks[i] {
				t.Errorf("host2: cvs created a container during a refusal")
			}
			continue
		}
		if now[i].ID != before[i].ID || now[i].State != "running" {
			t.Errorf("%s: container changed during a refusal: %+v -> %+v", h, before[i], now[i])
		}
	}

	// 7. cvs down refuses persistent containers without --force, then
	// removes only what cvs launched.
	_, _, code = runCVS(t, "--cluster", file, "down")
	if code != 5 {
		t.Errorf("down without --force: exit %d, want 5", code)
	}
	if _, ok := inspect(t, "host1", name); !ok {
		t.Fatal("down without --force removed a persistent container")
	}
	out, errOut, code = runCVS(t, "--cluster", file, "down", "--force")
	if code != 0 {
		t.Fatalf("down --force: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, oks := inspectAll(t, name); oks[0] || oks[2] {
		t.Error("down --force left containers behind")
	}
}

// assertUnchanged checks that the containers are still the ones in before.
func assertUnchanged(t *testing.T, name string, before []container) {
	t.Helper()
	now, oks := inspectAll(t, name)
	for i, h := range hostNames(t) {
		if !oks[i] || now[i].ID != before[i].ID || now[i].State != "running" {
			t.Errorf("%s: container changed: %+v -> %+v", h, before[i], now[i])
		}
	}
}

// replaceContainer swaps host's container for one of the same name running
// image (no cvs labels), and returns a function that puts the original back
// by renaming.
func replaceContainer(t *testing.T, host, name, image string) func() {
	t.Helper()
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	if _, err := l.HostDocker(ctx, host, "rename", name, name+"-saved"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.HostDocker(ctx, host, "run", "-d", "--name", name, image, "sleep", "infinity"); err != nil {
		t.Fatal(err)
	}
	return func() {
		l.HostDocker(ctx, host, "rm", "-f", name)
		if _, err := l.HostDocker(ctx, host, "rename", name+"-saved", name); err != nil {
			t.Fatal(err)
		}
	}
}

// per_run: nothing remains after a passing run, after a failing step, and
// after SIGINT during a step; a same-name container cvs did not create is
// refused and left alone.
func TestPerRunLeavesNothing(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-perrun"
	useContainer(t, name)
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: `
[suites.pass]
[[suites.pass.steps]]
name = "ok"
run = "test -x /usr/sbin/sshd && echo provisioned"

[suites.fail]
[[suites.fail.steps]]
name = "boom"
run = "echo failing; exit 3"
[[suites.fail.steps]]
name = "never"
run = "echo must not run"

[suites.slow]
[[suites.slow.steps]]
name = "sleep"
run = "echo sleeping; sleep 300"
`})
	noneLeft := func(when string) { t.Helper(); assertNoneLeft(t, name, when) }

	out, errOut, code := runCVS(t, "--cluster", file, "run", "pass")
	if code != 0 || strings.Count(out, "provisioned") != labHosts {
		t.Fatalf("pass: exit %d\n%s\n%s", code, out, errOut)
	}
	noneLeft("after a passing run")

	// "failing" twice a host: its output line, and its line under the
	// summary's count line (the failing hosts with their last output line).
	out, errOut, code = runCVS(t, "--cluster", file, "run", "fail")
	if code != 1 || strings.Contains(out, "must not run") || strings.Count(out, "failing") != 2*labHosts || !strings.Contains(out, fmt.Sprintf("boom  ok 0 · failed %d: ", labHosts)) {
		t.Fatalf("fail: exit %d, want 1 and no second step\n%s\n%s", code, out, errOut)
	}
	noneLeft("after a failing step")

	// SIGINT while the step sleeps: exit 130, containers removed, and the
	// step's process killed inside the container before that.
	cmd := cvsCommand(t.Context(), t, "--cluster", file, "run", "slow")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for strings.Count(so.String(), "sleeping") < labHosts && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	// Meanwhile a second cvs on the same cluster is refused by the lock,
	// naming the first, and changes nothing.
	out, errOut, code = runCVSBeside(t, cmd, "--cluster", file, "run", "pass")
	if code != 5 || !strings.Contains(out+errOut, "another cvs is working on container") || !strings.Contains(out+errOut, "run slow") {
		t.Errorf("second cvs during a run: exit %d, want 5 naming the holder\n%s\n%s", code, out, errOut)
	}
	cvsProcess(t, cmd).Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("SIGINT: %v, want exit 130\n%s\n%s", err, so.String(), se.String())
	}
	noneLeft("after SIGINT")

	// A same-name container that cvs did not create: refused, left alone.
	l := Lab(t)
	if _, err := l.HostDocker(testCtx(t, time.Minute), "host1", "run", "-d", "--name", name, l.WorkloadImage(), "sleep", "infinity"); err != nil {
		t.Fatal(err)
	}
	foreign, _ := inspect(t, "host1", name)
	out, errOut, code = runCVS(t, "--cluster", file, "run", "pass")
	if code != 5 || !strings.Contains(out+errOut, cvsHost(t, "host1")) || !strings.Contains(out+errOut, "did not create") {
		t.Fatalf("foreign container: exit %d, want 5 naming host1\n%s\n%s", code, out, errOut)
	}
	if c, ok := inspect(t, "host1", name); !ok || c.ID != foreign.ID {
		t.Error("cvs removed a container it did not create")
	}
	if _, oks := inspectAll(t, name); oks[1] || oks[2] {
		t.Error("cvs launched containers during a refusal")
	}
}

// no_launch: refuses when the container is absent; runs when present;
// never removes it.
func TestNoLaunch(t *testing.T) {
	runsIn(t, apiPass|cliPass)
	const name = "e2e-nolaunch"
	useContainer(t, name)
	file := writeCluster(t, clusterSpec{Lifetime: "no_launch", Name: name, Suites: `
[suites.check]
[[suites.check.steps]]
name = "hello"
run = "echo hello from $(hostname)"
`})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "check")
	if code != 5 || !strings.Contains(out+errOut, "no_launch") {
		t.Fatalf("absent: exit %d, want 5\n%s\n%s", code, out, errOut)
	}
	assertNoneLeft(t, name, "no_launch with the container absent")
	if t.Failed() {
		t.FailNow()
	}
	// The operator starts the containers (with sshd installed) by hand.
	l := Lab(t)
	eachHost(t, func(h lab.Host) {
		ctx := testCtx(t, 3*time.Minute)
		if _, err := l.HostDocker(ctx, h.Name, "run", "-d", "--name", name, "--network", "host",
			"-v", lab.AptRepoPath+":/cvs-apt:ro", l.WorkloadImage(), "sleep", "infinity"); err != nil {
			t.Error(err)
			return
		}
		if res, err := l.HostDocker(ctx, h.Name, "exec", name, "sh", "-c",
			"apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null"); err != nil {
			t.Errorf("%s: installing sshd by hand: %v %s", h.Name, err, res.Stderr)
		}
	})
	before, _ := inspectAll(t, name)
	out, errOut, code = runCVS(t, "--cluster", file, "run", "check")
	if code != 0 || strings.Count(out, "hello from") != labHosts {
		t.Fatalf("present: exit %d\n%s\n%s", code, out, errOut)
	}
	assertUnchanged(t, name, before)
	if _, _, code := runCVS(t, "--cluster", file, "down", "--force"); code != 5 {
		t.Errorf("down on no_launch: exit %d, want 5", code)
	}
	assertUnchanged(t, name, before)
}

// A setup script exiting 1: exit 4 with every host's output, and the
// freshly launched containers removed again. An oversized script is
// refused at validate (exit 2).
func TestSetupScriptFailure(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-badsetup"
	useContainer(t, name)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.sh")
	os.WriteFile(bad, []byte("echo \"setup failing on $(hostname)\"\nexit 1\n"), 0o644)
	file := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, SetupScript: bad, Suites: installSuite})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "install")
	if code != 4 {
		t.Fatalf("exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	for _, h := range hostNames(t) {
		if !strings.Contains(errOut, "setup failing on "+h) {
			t.Errorf("%s's output is not shown:\n%s", h, errOut)
		}
	}
	assertNoneLeft(t, name, "after a failed cold start")
	if !strings.Contains(errOut, "removed the containers this run launched") {
		t.Errorf("the rollback is not reported:\n%s", errOut)
	}

	big := filepath.Join(dir, "big.sh")
	os.WriteFile(big, bytes.Repeat([]byte("#"), 16*1024+1), 0o644)
	bigFile := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, SetupScript: big, Suites: installSuite})
	_, errOut, code = runCVS(t, "--cluster", bigFile, "validate")
	if code != 2 || !strings.Contains(errOut, "16385 bytes") {
		t.Errorf("oversized script: exit %d, want 2 naming the size\n%s", code, errOut)
	}
}

// pull_timeout against a registry that stalls: a clear timeout error
// naming the host, and nothing left running.
func TestPullTimeout(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-pull"
	l := Lab(t)
	useContainer(t, name)
	// The hosts must really pull: an image with a layer of 256 KiB no host
	// holds, which takes minutes at 8kbit. (The second workload image's own
	// layer is a few bytes: with the base layer in a host's store from
	// another image, one host pulled it within the 5 s, CI on afa3d16.)
	image, err := l.PushUniqueImage(testCtx(t, time.Minute), "pull-timeout", 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	eachHost(t, func(h lab.Host) {
		l.HostDocker(testCtx(t, time.Minute), h.Name, "rmi", "-f", image)
	})
	if err := l.SlowRegistry(testCtx(t, time.Minute), "8kbit"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(time.Minute, func(ctx context.Context) { l.StartRegistry(ctx) }) })
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Image: image, PullTimeout: "5s", Suites: installSuite})
	start := time.Now()
	out, errOut, code := runCVS(t, "--cluster", file, "run", "install")
	if code != 4 {
		t.Fatalf("exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	if time.Since(start) > 2*time.Minute {
		t.Errorf("the run took %s with a 5s pull_timeout", time.Since(start))
	}
	for _, h := range hostNames(t) {
		// Pinned, the hosts pull the digest the tag resolved to.
		if !strings.Contains(errOut, cvsHost(t, h)+": docker run (pulling "+strings.TrimSuffix(image, ":pull-timeout")) || !strings.Contains(errOut, "did not finish within pull_timeout (5s)") {
			t.Errorf("no timeout error naming %s:\n%s", h, errOut)
		}
	}
	assertNoneLeft(t, name, "after the pull timeout")
	for _, h := range hostNames(t) {
		res, _ := l.HostExec(testCtx(t, time.Minute), h, "sh", "-c", "pgrep -af 'docker (run|pull)' || true")
		if strings.TrimSpace(res.Stdout) != "" {
			t.Errorf("%s: docker client still running after the timeout: %s", h, res.Stdout)
		}
	}
}

// Two clusters' containers on the same hosts with --network host share
// port 2224: the second cold start must not take the first one's sshd for
// its own. It stops before launching (exit 3), names the port, and leaves
// the first cluster's alone.
func TestSSHDPortTakenByAnotherContainer(t *testing.T) {
	runsIn(t, apiPass)
	const first, second = "e2e-port-first", "e2e-port-second"
	removeEverywhere(t, "cvs-lab")
	for _, n := range []string{first, second} {
		useContainer(t, n)
	}
	fileA := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: first, Suites: installSuite})
	fileB := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: second, Suites: installSuite})
	if out, errOut, code := runCVS(t, "--cluster", fileA, "run", "install"); code != 0 {
		t.Fatalf("first cluster: exit %d\n%s\n%s", code, out, errOut)
	}
	before, _ := inspectAll(t, first)
	out, errOut, code := runCVS(t, "--cluster", fileB, "run", "install")
	// The preflight sees the port taken on the hosts' network before
	// anything is launched (exit 3); the sshd stage's own check (exit 4
	// after a rollback) stays for containers on their own network.
	if code != 3 || !strings.Contains(out+errOut, "port 2224 is already in use") || strings.Contains(errOut, "launching") {
		t.Fatalf("second cluster: exit %d, want 3 naming the taken port, nothing launched\n%s\n%s", code, out, errOut)
	}
	assertNoneLeft(t, second, "after the refused cold start")
	assertUnchanged(t, first, before)
}
