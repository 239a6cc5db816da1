package transport

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSrun is an srun that runs its task here: it checks the options cvs
// passes and execs the command after them, with no environment
// (--export=NONE: srun gives the task none of its own, and finds the
// command by its absolute path only). The real one is tested on the Slurm
// lab.
const fakeSrun = `#!/bin/sh
node=
while [ $# -gt 0 ]; do
	case "$1" in
	--nodelist=*) node=${1#--nodelist=} ;;
	--nodes=1|--ntasks=1|--overlap|--quiet|--kill-on-bad-exit=1|--export=NONE) ;;
	--*) echo "srun: error: unexpected option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ "$node" = down ] && { echo "srun: error: Unable to create step for job 7: Requested node configuration is not available" >&2; exit 1; }
[ -n "$node" ] || { echo "srun: error: no node" >&2; exit 2; }
case $1 in /*) ;; *) echo "slurmstepd: error: execve(): $1: No such file or directory" >&2; exit 2 ;; esac
exec env -i SLURMD_NODENAME="$node" "$@"
`

func newFakeSrun(t *testing.T, node string) *Srun {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "srun")
	if err := os.WriteFile(bin, []byte(fakeSrun), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Srun{Host: node, Bin: bin}
}

func TestSrunRunsOnTheNode(t *testing.T) {
	s := newFakeSrun(t, "node01")
	res, err := s.Run(context.Background(), Command{Line: "echo out; echo err >&2; exit 3"})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Host != "node01" || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("res %+v err %v", res, err)
	}
	if res, err := s.Run(context.Background(), Command{Line: "printf '%s' \"it's\""}); err != nil || string(res.Stdout) != "it's" {
		t.Errorf("quoting: %q %v", res.Stdout, err)
	}
}

// A node srun cannot place a task on is unreachable, not a failed command.
func TestSrunNodeDown(t *testing.T) {
	_, err := newFakeSrun(t, "down").Run(context.Background(), Command{Line: "true"})
	if ErrorKind(err) != KindUnreachable || !strings.Contains(err.Error(), "Requested node configuration") {
		t.Fatalf("err %v (kind %s)", err, ErrorKind(err))
	}
}

// At its time limit the command is killed on the node (its process group,
// by the watchdog), not only srun.
func TestSrunTimeoutKillsTheTask(t *testing.T) {
	s := newFakeSrun(t, "node01")
	marker := filepath.Join(t.TempDir(), "alive")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := s.Run(ctx, Command{Line: "sleep 30; touch " + marker})
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("err %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	// [s]leep: the pattern does not match pgrep's own command line.
	if res, _ := s.Run(context.Background(), Command{Line: "pgrep -fc '[s]leep 30; touch " + marker + "' || true"}); strings.TrimSpace(string(res.Stdout)) != "0" {
		t.Errorf("the task still runs after the timeout: %q", res.Stdout)
	}
}

func TestSrunUpload(t *testing.T) {
	s := newFakeSrun(t, "node01")
	dst := filepath.Join(t.TempDir(), "f")
	if err := s.Upload(context.Background(), dst, strings.NewReader("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	fi, _ := os.Stat(dst)
	if err != nil || string(b) != "secret\n" || fi.Mode().Perm() != 0o600 {
		t.Errorf("%q %v %v", b, err, fi.Mode())
	}
}

// A task gets none of the controller's environment (see
// TestSrunGroupTasksGetNoControllerEnvironment).
func TestSrunTaskGetsNoControllerEnvironment(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	res, err := newFakeSrun(t, "node01").Run(context.Background(), Command{Line: `env; echo "home=$HOME"`})
	out := "\n" + string(res.Stdout)
	if err != nil || strings.Contains(out, "DOCKER_HOST") || !strings.Contains(out, "\nPATH=/") || strings.Contains(out, "home=\n") {
		t.Errorf("%v:\n%s", err, out)
	}
}
