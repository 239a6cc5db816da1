//go:build e2e

// Package e2e runs cvs as a user would (the built binary, a cluster file,
// real exit codes and output) against the multi-host lab of package lab.
//
// TestMain brings the lab up once for the package (3 hosts) and tears it
// down at the end. With CVS_LAB_REUSE=1 it uses a lab that is already up
// (cvs-lab up) and leaves the lab up afterwards, which makes reruns fast.
// The tier needs root and scripts/lab-deps.sh:
//
//	go test -tags e2e -count=1 -timeout 30m ./e2e/...
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// labHosts is the lab size every test in this package may rely on.
const labHosts = 3

// viaSlurm: CVS_E2E_ENGINE=slurm runs the tier through Slurm. The lab is
// a Slurm lab (cvs-lab up --slurm), every cluster file says [engine] kind
// = "slurm" and names the hosts by node name, and every cvs runs inside
// salloc -N 3: the same scenarios, with every per-host command an srun
// task. Tests of what only SSH has (host keys, a lost connection) skip.
var viaSlurm = os.Getenv("CVS_E2E_ENGINE") == "slurm"

// The tier runs in three passes (scripts/e2e.sh): cvs reaching the lab's
// hosts over SSH and their Docker daemons through the Engine API (the
// default path), the same through the docker CLI (CVS_DOCKER_ACCESS=cli),
// and every per-host command through Slurm (CVS_E2E_ENGINE=slurm). A test
// starts with runsIn, naming the passes whose differences it is about: the
// CLI pass runs the tests whose behaviour depends on how cvs talks to Docker
// (launch, pull, exec, inspect, load), the Slurm pass those whose behaviour
// depends on how a command reaches a host (locks, output framing, signals,
// killed or hung commands). The rest are the same on every path and run
// once, on the default one. TestEveryTestSaysWhereItRuns enforces it.
type pass uint8

const (
	apiPass   pass = 1 << iota // SSH and the Engine API: the default path
	cliPass                    // CVS_DOCKER_ACCESS=cli
	slurmPass                  // CVS_E2E_ENGINE=slurm
)

// thisPass is the pass this process runs.
var thisPass = func() pass {
	switch {
	case viaSlurm:
		return slurmPass
	case os.Getenv("CVS_DOCKER_ACCESS") == "cli":
		return cliPass
	}
	return apiPass
}()

func (p pass) String() string {
	switch p {
	case cliPass:
		return "cli"
	case slurmPass:
		return "slurm"
	}
	return "api"
}

// runsIn skips t unless this pass is one of passes. With CVS_E2E_CLAIMS set
// to a folder, several processes on labs of their own share one pass's
// tests: each test runs in the first process to claim it, and the others
// skip it (scripts/e2e.sh runs the API and CLI passes on two labs so).
func runsIn(t *testing.T, passes pass) {
	t.Helper()
	if passes&thisPass == 0 {
		t.Skipf("the %s pass runs only the tests whose behaviour depends on it; this one runs in another", thisPass)
	}
	dir := os.Getenv("CVS_E2E_CLAIMS")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, thisPass.String()+"."+t.Name()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, os.ErrExist) {
		t.Skip("run on another lab of this run (CVS_E2E_CLAIMS)")
	}
	if err != nil {
		t.Fatalf("claim the test in CVS_E2E_CLAIMS: %v", err)
	}
	fmt.Fprintf(f, "%s %d\n", Lab(t).Dir(), os.Getpid())
	f.Close()
	// The claim ends with the test's time, for scripts/e2e.sh's list of
	// the slowest tests.
	start, claim := time.Now(), f.Name()
	t.Cleanup(func() {
		if f, err := os.OpenFile(claim, os.O_APPEND|os.O_WRONLY, 0); err == nil {
			fmt.Fprintf(f, "%.0f s\n", time.Since(start).Seconds())
			f.Close()
		}
	})
}

// sshOnly skips a test that the Slurm pass cannot run, saying why.
func sshOnly(t *testing.T, why string) {
	t.Helper()
	if viaSlurm {
		t.Skip("CVS_E2E_ENGINE=slurm: " + why)
	}
}

var (
	theLab *lab.Lab
	// cvsBin is the cvs binary under test; cvsBuildErr says why there is
	// none.
	cvsBin      string
	cvsBuildErr error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Ctrl-C during a long Up must still tear the lab down.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := lab.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	reuse := os.Getenv("CVS_LAB_REUSE") == "1"
	l, err := setUpLab(ctx, cfg, reuse)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: lab:", err)
		return 1
	}
	theLab = l
	if !reuse {
		defer func() {
			// Tear down even after Ctrl-C: a fresh context.
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := l.Down(dctx, lab.DownOptions{}); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: lab down:", err)
			}
		}()
	}

	tmp, err := os.MkdirTemp("", "cvs-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Built before XDG_CACHE_HOME moves below: Go's build cache lives there
	// unless GOCACHE says otherwise, and a fresh one compiled the whole
	// module (minutes on a loaded machine) in every run. CVS_E2E_CVS names a
	// binary built already (scripts/e2e.sh builds one for its lanes).
	if bin := os.Getenv("CVS_E2E_CVS"); bin != "" {
		cvsBin = bin
	} else {
		cvsBin, cvsBuildErr = buildCVS(ctx, tmp)
	}
	if cvsBuildErr != nil {
		fmt.Fprintln(os.Stderr, "e2e: no cvs binary, cvs tests will fail:", cvsBuildErr)
	}
	// cvs's digest cache and run records go to this run's own folders, not
	// the home of whoever runs the tests.
	for _, v := range []string{"XDG_CACHE_HOME", "XDG_STATE_HOME"} {
		dir := filepath.Join(tmp, v)
		os.MkdirAll(dir, 0o700)
		os.Setenv(v, dir)
	}
	return m.Run()
}

// setUpLab returns a lab of at least labHosts hosts: the running one when
// reuse is set and it is big enough, a new one otherwise.
func setUpLab(ctx context.Context, cfg lab.Config, reuse bool) (*lab.Lab, error) {
	if reuse {
		l, err := lab.Open(ctx, cfg)
		if err == nil && len(l.Hosts()) >= labHosts && l.Slurm() == viaSlurm {
			fmt.Fprintf(os.Stderr, "e2e: reusing the lab in %s (%d hosts)\n", l.Dir(), len(l.Hosts()))
			return l, nil
		}
	}
	l, err := lab.New(cfg)
	if err != nil {
		return nil, err
	}
	return l, l.UpWith(ctx, labHosts, lab.UpOptions{Slurm: viaSlurm})
}

// buildCVS builds ./cmd/cvs into dir.
func buildCVS(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "cvs")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cvs")
	cmd.Dir = ".." // the module root; go test runs in the package directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/cvs: %v\n%s", err, out.String())
	}
	return bin, nil
}

// Lab returns the package's lab.
func Lab(t testing.TB) *lab.Lab {
	t.Helper()
	if theLab == nil {
		t.Fatal("no lab: TestMain did not bring one up")
	}
	return theLab
}

// runCVS runs the cvs binary with --cluster pointing at the lab's cluster
// file, followed by args, and returns what a user would see. It fails the
// test only if cvs could not be built or run at all (or ran over 5 minutes);
// a non-zero exit code is returned for the test to judge.
func runCVS(t testing.TB, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	stdout, stderr, exitCode, _ = runCVSUsage(t, args...)
	return stdout, stderr, exitCode
}

// runCVSUsage is runCVS that also returns the peak resident memory of the
// cvs process, in KiB (getrusage's ru_maxrss).
func runCVSUsage(t testing.TB, args ...string) (stdout, stderr string, exitCode int, maxRSS int64) {
	t.Helper()
	return runCVSIn(t, "", args...)
}

// runCVSBeside is runCVS while first (a started cvsCommand) runs. In the
// Slurm pass it runs in first's allocation, as an operator runs a second
// cvs from another shell of the job (SLURM_JOB_ID set): a second salloc
// of the same nodes would wait for the first to end.
func runCVSBeside(t testing.TB, first *exec.Cmd, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	job := ""
	if viaSlurm {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cvsProcess(t, first).Pid))
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "SLURM_JOB_ID="); ok {
				job = v
			}
		}
		if job == "" {
			t.Fatal("the first cvs has no SLURM_JOB_ID")
		}
	}
	stdout, stderr, exitCode, _ = runCVSIn(t, job, args...)
	return stdout, stderr, exitCode
}

// runCVSIn runs cvs as runCVSUsage does; in the Slurm pass, in the
// allocation job when set (else in its own).
func runCVSIn(t testing.TB, job string, args ...string) (stdout, stderr string, exitCode int, maxRSS int64) {
	t.Helper()
	if cvsBuildErr != nil {
		t.Fatalf("cvs binary: %v", cvsBuildErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv := append([]string{"--cluster", labClusterFile(t)}, args...)
	cmd := cvsCommandIn(ctx, t, job, argv...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	t.Logf("$ cvs %s\n%s%s", strings.Join(argv, " "), clip(so.String()), clip(se.String()))
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			maxRSS = ru.Maxrss
		}
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		exitCode = ee.ExitCode()
	default:
		t.Fatalf("cvs %s: %v", strings.Join(args, " "), err)
	}
	return so.String(), se.String(), exitCode, maxRSS
}

// labClusterFile is the lab's own cluster file (through srun in the
// Slurm pass).
func labClusterFile(t testing.TB) string {
	if viaSlurm {
		return Lab(t).SlurmClusterFile()
	}
	return Lab(t).ClusterFile()
}

// cvsCommand is the cvs binary with argv, as the pass runs it: directly,
// or inside an allocation of the lab's hosts (salloc -N 3, from /tmp: srun
// starts tasks in the caller's folder, and the nodes have /tmp).
func cvsCommand(ctx context.Context, t testing.TB, argv ...string) *exec.Cmd {
	return cvsCommandIn(ctx, t, "", argv...)
}

// cvsCommandIn is cvsCommand; in the Slurm pass, in the allocation job
// when set (SLURM_JOB_ID, as from another shell of the job) rather than
// in one of its own.
func cvsCommandIn(ctx context.Context, t testing.TB, job string, argv ...string) *exec.Cmd {
	var cmd *exec.Cmd
	switch {
	case viaSlurm && job != "":
		cmd = Lab(t).SlurmCommand(ctx, cvsBin, argv...)
		cmd.Env, cmd.Dir = append(cmd.Env, "SLURM_JOB_ID="+job), "/tmp"
	case viaSlurm:
		cmd = Lab(t).SlurmCommand(ctx, "salloc", append([]string{"-N", strconv.Itoa(labHosts), "--quiet", cvsBin}, argv...)...)
		cmd.Dir = "/tmp"
	default:
		cmd = exec.CommandContext(ctx, cvsBin, argv...)
		cmd.Env = os.Environ()
	}
	// cvs must authenticate with the cluster file's identity alone, not with
	// whatever agent the person running the tests has.
	cmd.Env = withoutEnv(cmd.Env, "SSH_AUTH_SOCK", "CVS_CLUSTER")
	return cmd
}

// cvsProcess is the cvs process of a started cvsCommand: the command's
// own, or salloc's child in the Slurm pass.
func cvsProcess(t testing.TB, cmd *exec.Cmd) *os.Process {
	t.Helper()
	if !viaSlurm {
		return cmd.Process
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == cvsBin {
				p, _ := os.FindProcess(pid)
				return p
			}
		}
	}
	t.Fatalf("salloc (pid %d) started no cvs", cmd.Process.Pid)
	return nil
}

// clip keeps a test log readable when cvs printed a lot.
func clip(s string) string {
	const max = 16 << 10
	if len(s) <= max {
		return s
	}
	return s[:max/2] + fmt.Sprintf("\n[... %d bytes ...]\n", len(s)-max) + s[len(s)-max/2:]
}

// withoutEnv drops the named variables from env.
func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// testCtx is a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestEveryTestSaysWhereItRuns: every test of the package calls runsIn, so
// that the CLI and Slurm passes run what they must and a test added without
// a thought to them is caught here, not by a pass that silently ran it.
func TestEveryTestSaysWhereItRuns(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	fset := token.NewFileSet()
	tests := 0
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" || fn.Name.Name == t.Name() {
				continue
			}
			tests++
			calls := false
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok {
					if id, ok := c.Fun.(*ast.Ident); ok && id.Name == "runsIn" {
						calls = true
					}
				}
				return !calls
			})
			if !calls {
				t.Errorf("%s: %s does not call runsIn(t, ...): say in which passes it runs", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if tests < 30 {
		t.Errorf("found %d tests; the parse missed some", tests)
	}
}
