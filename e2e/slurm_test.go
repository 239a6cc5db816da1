//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// slurmLab is the package's lab in the Slurm pass; otherwise a Slurm lab
// of its own (CVS_SLURM_LAB_DIR, default /var/tmp/cvs-slurm-lab;
// CVS_SLURM_LAB_SUBNET, default 172.30.0.0/24; CVS_SLURM_LAB_REUSE=1
// keeps it).
func slurmLab(t *testing.T, ctx context.Context) *lab.Lab {
	if viaSlurm {
		return Lab(t)
	}
	cfg := lab.Config{Dir: "/var/tmp/cvs-slurm-lab", Subnet: netip.MustParsePrefix("172.30.0.0/24"), Log: os.Stderr}
	if d := os.Getenv("CVS_SLURM_LAB_DIR"); d != "" {
		cfg.Dir = d
	}
	if s := os.Getenv("CVS_SLURM_LAB_SUBNET"); s != "" {
		cfg.Subnet = netip.MustParsePrefix(s)
	}
	reuse := os.Getenv("CVS_SLURM_LAB_REUSE") == "1"
	l, err := lab.Open(ctx, cfg)
	if err != nil || !reuse || !l.Slurm() || len(l.Hosts()) < 3 {
		if l, err = lab.New(cfg); err != nil {
			t.Fatal(err)
		}
		if err := l.UpWith(ctx, 3, lab.UpOptions{Slurm: true}); err != nil {
			t.Fatal(err)
		}
		if !reuse {
			t.Cleanup(func() { cleanupCtx(3*time.Minute, func(ctx context.Context) { l.Down(ctx, lab.DownOptions{}) }) })
		}
	}
	return l
}

// Issue 14 on a real Slurm lab (cvs-lab up 3 --slurm, in its own folder
// and subnet: CVS_SLURM_LAB_DIR, default /var/tmp/cvs-slurm-lab,
// CVS_SLURM_LAB_SUBNET, default 172.30.0.0/24; CVS_SLURM_LAB_REUSE=1 keeps
// it). With [engine] kind = "slurm" and cvs inside an allocation (salloc
// -N 3), every per-host command is an srun step on its node: the
// persistent install, the attach, the refusal of a partial set, the
// repair and down work as over SSH. It runs in the Slurm pass
// (CVS_E2E_ENGINE=slurm, which make test runs), or with CVS_E2E_SLURM=1 in
// the others.
func TestSlurmEngineOnTheSlurmLab(t *testing.T) {
	if os.Getenv("CVS_E2E_SLURM") != "1" { // CVS_E2E_SLURM=1: on its own Slurm lab, in any pass
		runsIn(t, slurmPass)
	}
	ctx := testCtx(t, 20*time.Minute)
	l := slurmLab(t, ctx)
	names := []string{}
	for _, h := range l.Hosts()[:3] {
		names = append(names, h.Name)
	}
	file := filepath.Join(t.TempDir(), "cluster.toml")
	const name = "e2e-slurm"
	text := fmt.Sprintf(`user = "root"
hosts = ["%s"]

[env]
CVS_E2E_PEERS = %q

[engine]
kind = "slurm"

[container]
lifetime = "persistent"
image = %q
name = %q
network = "host"
volumes = [%q]
%s%s`, strings.Join(names, `", "`), strings.Join(names, " "), l.WorkloadImage(), name, lab.AptRepoPath+":/cvs-apt:ro", installSuite, testSuite)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// cvs in an allocation of the 3 nodes, as an operator runs it.
	cvs := func(alloc bool, args ...string) (string, int) {
		t.Helper()
		argv := append([]string{cvsBin, "--cluster", file}, args...)
		if alloc {
			argv = append([]string{"salloc", "-N", "3", "--quiet"}, argv...)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := l.SlurmCommand(cctx, argv[0], argv[1:]...)
		cmd.Dir = "/tmp" // srun starts tasks in the caller's folder
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		t.Logf("$ %s\n%s", strings.Join(argv, " "), clip(out.String()))
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &ee):
			return out.String(), ee.ExitCode()
		}
		t.Fatalf("%v", err)
		return "", -1
	}
	srun := func(node string, args ...string) {
		t.Helper()
		cmd := l.SlurmCommand(ctx, "srun", append([]string{"-N1", "-w", node, "--chdir=/tmp"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("srun %v: %v %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		// The test's context has ended by now: a fresh one, and no
		// verdict (the test removes the containers itself when it gets
		// that far).
		cleanupCtx(3*time.Minute, func(ctx context.Context) {
			cmd := l.SlurmCommand(ctx, "salloc", "-N", "3", "--quiet", cvsBin, "--cluster", file, "-q", "down", "--force")
			cmd.Dir = "/tmp"
			cmd.Run()
		})
	})

	if out, code := cvs(false, "status"); code != 2 || !strings.Contains(out, "salloc") {
		t.Errorf("outside an allocation: exit %d, want 2 saying to use salloc\n%s", code, out)
	}
	if out, code := cvs(true, "run", "install"); code != 0 {
		t.Fatalf("run install through srun: exit %d\n%s", code, out)
	}
	out, code := cvs(true, "run", "test")
	for _, h := range names {
		if !strings.Contains(out, "found "+h) || !strings.Contains(out, "peer "+h+" says "+h) {
			t.Errorf("run test: %s did not answer\n%s", h, out)
		}
	}
	if code != 0 {
		t.Fatalf("run test: exit %d", code)
	}
	if out, _ := cvs(true, "status"); !strings.Contains(out, " cli ") || !strings.Contains(out, `kind = "slurm"`) {
		t.Errorf("status does not say the docker CLI is used through srun:\n%s", out)
	}
	// host2's container stops: the same refusal as over SSH, then the
	// same repair.
	srun(names[1], "docker", "stop", "-t", "1", name)
	if out, code := cvs(true, "run", "test"); code != 5 || !strings.Contains(out, "exited on "+names[1]) {
		t.Fatalf("partial set: exit %d, want 5 naming %s\n%s", code, names[1], out)
	}
	if out, code := cvs(true, "up", "--repair", "--yes"); code != 0 {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	if out, code := cvs(true, "run", "test"); code != 0 || !strings.Contains(out, "found "+names[1]) {
		t.Fatalf("after the repair: exit %d\n%s", code, out)
	}
	if out, code := cvs(true, "down", "--force"); code != 0 {
		t.Fatalf("down: exit %d\n%s", code, out)
	}

	// distribute = "push" through Slurm: the nodes hold no image; the
	// layers go out once with sbcast (Slurm's tree), each node loads them.
	for _, h := range names {
		srun(h, "sh", "-c", "docker rmi -f $(docker images -q) >/dev/null 2>&1; true")
	}
	pushed := strings.Replace(text, "[container]\n", "[container]\ndistribute = \"push\"\n", 1)
	if err := os.WriteFile(file, []byte(pushed), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = cvs(true, "run", "install")
	if code != 0 || !strings.Contains(out, "with sbcast") || strings.Count(out, "image pushed") != len(names) {
		t.Fatalf("push through sbcast: exit %d\n%s", code, out)
	}
	if out, code := cvs(true, "run", "test"); code != 0 || !strings.Contains(out, "peer "+names[2]+" says "+names[2]) {
		t.Fatalf("after the push: exit %d\n%s", code, out)
	}
	if out, code := cvs(true, "down", "--force"); code != 0 {
		t.Fatalf("down after the push: exit %d\n%s", code, out)
	}
}
