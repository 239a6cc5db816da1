//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nonRootImage makes an image FROM the lab's workload image with USER
// nobody, built once on host1 and pushed to the lab registry, so that every
// host pulls the same image ID. It returns its reference.
func nonRootImage(t *testing.T) string {
	t.Helper()
	l := Lab(t)
	ctx := testCtx(t, 5*time.Minute)
	ref := l.Registry() + "/cvs-e2e/nobody:1"
	const tmp = "e2e-nobody-build"
	// A tag left by an earlier run on some host would name another build.
	for _, h := range hostNames(t) {
		l.HostDocker(ctx, h, "rm", "-f", "e2e-nonroot")
		l.HostDocker(ctx, h, "rmi", "-f", ref)
	}
	steps := [][]string{
		{"pull", "--quiet", l.WorkloadImage()},
		{"rm", "-f", tmp},
		{"create", "--name", tmp, l.WorkloadImage(), "true"},
		{"commit", "--change", "USER nobody", tmp, ref},
		{"rm", "-f", tmp},
		{"push", ref},
	}
	// The image shares the workload's layers: left on a host, it would keep
	// them there for tests that pull the workload afresh.
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) {
			for _, h := range hostNames(t) {
				l.HostDocker(ctx, h, "rm", "-f", "e2e-nonroot")
				l.HostDocker(ctx, h, "rmi", "-f", ref)
			}
		})
	})
	for _, argv := range steps {
		if res, err := l.HostDocker(ctx, "host1", argv...); err != nil {
			t.Fatalf("docker %s on host1: %v\n%s%s", strings.Join(argv, " "), err, res.Stdout, res.Stderr)
		}
	}
	return ref
}

// Issue 9, items 5 and 6, on real hosts: an image whose USER is nobody
// gets cvs's sshd (cvs's own execs run as root), its steps run as nobody,
// and the step script (which holds [env] values) is 0600 and nobody's, in
// a root-owned 0711 folder that is gone after the run.
func TestNonRootImageAndPrivateStepScripts(t *testing.T) {
	runsIn(t, apiPass|cliPass)
	const name = "e2e-nonroot"
	useContainer(t, name)
	image := nonRootImage(t)
	suites := `
[suites.check]
[[suites.check.steps]]
name = "who"
run = """
echo "uid $(id -u)"
echo "script $(stat -c '%a %U' "$0")"
echo "folder $(stat -c '%a %U' "$(dirname "$0")")"
grep -c '^export CVS_E2E_PEERS=' "$0" | sed 's/^/env lines /'
"""
`
	file := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Image: image, Suites: suites})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "check")
	if code != 0 {
		t.Fatalf("cvs run check on a USER nobody image: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"uid 65534", "script 600 nobody", "folder 711 root", "env lines 1"} {
		if strings.Count(out, want) != labHosts {
			t.Errorf("want %q on every host:\n%s", want, out)
		}
	}
	doc, _ := statusJSONFile(t, file)
	for _, h := range doc.Hosts {
		if h.Container.SSHD != "listening" {
			t.Errorf("%s: sshd %s in the USER nobody container", h.Host, h.Container.SSHD)
		}
	}
	for _, h := range hostNames(t) {
		res, err := Lab(t).HostDocker(testCtx(t, time.Minute), h, "exec", name, "sh", "-c", "ls -d /tmp/cvs-* 2>/dev/null; true")
		if err != nil || strings.TrimSpace(res.Stdout) != "" {
			t.Errorf("%s: step folders left in the container: %q %v", h, res.Stdout, err)
		}
	}
}

// Issue 9 item 12 on real hosts: a step that prints 256 MiB without a
// newline on every host finishes normally, and cvs's memory stays bounded
// (before: quadratic splitting stalled the stream until the step's time
// limit killed it).
func TestHugeOutputWithoutNewlines(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-bigout"
	useContainer(t, name)
	suites := `
[suites.flood]
[[suites.flood.steps]]
name = "bar"
timeout = "5m"
run = "head -c 268435456 /dev/zero | tr '\\0' '\\r'; echo; echo finished"
`
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
	out, errOut, code, maxRSS := runCVSUsage(t, "--cluster", file, "--json", "run", "flood")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, clip(errOut))
	}
	if strings.Count(out, `finished\n`) != labHosts {
		t.Errorf("not every host's step finished:\n%s", clip(out))
	}
	if maxRSS > 256<<10 {
		t.Errorf("cvs peaked at %d MiB of memory for %d hosts × 256 MiB of output", maxRSS>>10, labHosts)
	}
	t.Logf("cvs peak RSS: %d MiB", maxRSS>>10)
	assertNoneLeft(t, name, "after the run")
}

// Issue 9 item 11 on real hosts: the cluster's key folder is deleted (as
// cvs's own advice may suggest) between install and test. The next run
// finds sshd running with the old keys, restarts it with the new ones on
// every host, and the peers reach each other again.
func TestSSHDRestartedWhenClusterKeysChange(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-rekey"
	removeEverywhere(t, "cvs-lab")
	useContainer(t, name)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	file := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Suites: installSuite + testSuite})
	if out, errOut, code := runCVS(t, "--cluster", file, "run", "install"); code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, errOut)
	}
	keys := filepath.Join(os.Getenv("XDG_STATE_HOME"), "cvs")
	if err := os.RemoveAll(keys); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCVS(t, "--cluster", file, "run", "test")
	if code != 0 {
		t.Fatalf("test after the keys changed: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := strings.Count(errOut, "restarted with the cluster's"); n != labHosts {
		t.Errorf("sshd restarted on %d hosts, want %d:\n%s", n, labHosts, errOut)
	}
	for _, h := range hostNames(t) {
		if !strings.Contains(out, "peer "+addrOf(t, h)+" says "+h) {
			t.Errorf("the head did not reach %s's container with the new keys:\n%s", h, out)
		}
	}
	// Nothing changed since: the next run leaves sshd alone.
	_, errOut, code = runCVS(t, "--cluster", file, "run", "test")
	if code != 0 || strings.Count(errOut, "setup skipped") != labHosts {
		t.Errorf("a third run must skip sshd everywhere: exit %d\n%s", code, errOut)
	}
}

// Issue 9 item 1 on a real host: links planted where the lock used to live
// (/tmp/cvs-NAME.lock and .owner) are neither written through nor block
// cvs; the lock lives in the SSH user's private, host-local folder
// (/run/cvs/locks for root, issue 20).
func TestPlantedLockSymlinksOnAHost(t *testing.T) {
	runsIn(t, apiPass|slurmPass)
	const name = "e2e-planted"
	useContainer(t, name)
	l := Lab(t)
	// The test's own commands, around a run that provisions (a minute on
	// a loaded machine: one minute for all of it ran out once).
	ctx := testCtx(t, 5*time.Minute)
	plant := []string{"sh", "-c", `printf precious >/root/victim && chmod 644 /root/victim &&
ln -sfn /root/victim /tmp/cvs-` + name + `.lock.owner && ln -sfn /etc/cron.d/cvs-planted /tmp/cvs-` + name + `.lock`}
	if res, err := l.HostExec(ctx, "host1", plant...); err != nil {
		t.Fatalf("planting: %v %s", err, res.Stderr)
	}
	t.Cleanup(func() {
		cleanupCtx(time.Minute, func(ctx context.Context) {
			l.HostExec(ctx, "host1", "rm", "-f", "/root/victim", "/tmp/cvs-"+name+".lock.owner", "/tmp/cvs-"+name+".lock", "/etc/cron.d/cvs-planted")
		})
	})
	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
	if out, errOut, code := runCVS(t, "--cluster", file, "run", "s"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	res, err := l.HostExec(ctx, "host1", "sh", "-c", `cat /root/victim; echo; test -e /etc/cron.d/cvs-planted && echo CREATED; stat -c '%a %U' /run/cvs /run/cvs/locks; ls /run/cvs/locks`)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Stdout
	if !strings.HasPrefix(got, "precious\n") || strings.Contains(got, "CREATED") || strings.Count(got, "700 root") != 2 || !strings.Contains(got, name+".lock") {
		t.Errorf("after the run:\n%s", got)
	}
}
