//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 11 on the lab: SIGINT and SIGTERM at every stage boundary of a
// cold start (probe, launch, provisioning, sshd, suite step, teardown).
// cvs is run with --log-level debug, which logs "stage name=X" as each
// stage begins; the signal is sent the moment that line appears. Then:
// exit 130 (SIGINT) or 143 (SIGTERM); per_run leaves no container;
// persistent leaves every host's container either absent (untouched) or
// running, provisioned with a record, and with sshd listening.
func TestSignalsAtEveryStageBoundary(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-signals"
	useContainer(t, name)
	suites := `
[suites.slow]
[[suites.slow.steps]]
name = "work"
run = "echo working; sleep 8"
`
	stages := []string{"probe", "launch", "provisioning", "sshd", "suite", "teardown"}
	for i, stage := range stages {
		for _, lt := range []string{"per_run", "persistent"} {
			if stage == "teardown" && lt == "persistent" {
				continue // a persistent run has no teardown
			}
			sig := syscall.SIGINT
			if i%2 == 1 {
				sig = syscall.SIGTERM
			}
			if lt == "persistent" {
				sig = map[syscall.Signal]syscall.Signal{syscall.SIGINT: syscall.SIGTERM, syscall.SIGTERM: syscall.SIGINT}[sig]
			}
			t.Run(fmt.Sprintf("%s/%s/%s", lt, stage, sig), func(t *testing.T) {
				removeEverywhere(t, name)
				file := writeCluster(t, clusterSpec{Lifetime: lt, Name: name, Suites: suites})
				code, stderr := signalAt(t, file, stage, sig)
				if want := 128 + int(sig); code != want {
					t.Fatalf("exit %d, want %d\n%s", code, want, stderr)
				}
				if !strings.Contains(stderr, "stopping remote commands and cleaning up") {
					t.Errorf("no word of the signal on stderr:\n%s", stderr)
				}
				if lt == "per_run" {
					assertNoneLeft(t, name, "after "+sig.String()+" at "+stage)
					return
				}
				assertWholeOrUntouched(t, file, stage)
			})
		}
	}
}

// signalAt runs `cvs run slow` on file and sends sig as soon as stage
// begins; it returns the exit code and stderr.
func signalAt(t *testing.T, file, stage string, sig syscall.Signal) (int, string) {
	t.Helper()
	cmd := cvsCommand(t.Context(), t, "--cluster", file, "--log-level", "debug", "run", "slow")
	cmd.Stdout = io.Discard
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	sent := false
	marker := "stage name=" + stage
	if stage != "probe" && stage != "launch" && stage != "sshd" && stage != "teardown" {
		marker = `stage name="` + stage // names with spaces are quoted
	}
	sc := bufio.NewScanner(pipe)
	killer := time.AfterFunc(4*time.Minute, func() { cmd.Process.Kill() })
	defer killer.Stop()
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		if !sent && strings.Contains(sc.Text(), marker) {
			cvsProcess(t, cmd).Signal(sig)
			sent = true
		}
	}
	err = cmd.Wait()
	if !sent {
		t.Fatalf("the %s stage never began:\n%s", stage, all.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, all.String()
}

// assertWholeOrUntouched checks, with cvs status, that every host's
// container is absent or running, provisioned and recorded, with sshd
// running.
func assertWholeOrUntouched(t *testing.T, file, when string) {
	t.Helper()
	out, _, _ := runCVS(t, "--cluster", file, "--json", "status")
	var doc struct {
		Hosts []struct {
			Host      string `json:"host"`
			Container struct {
				State        string `json:"state"`
				SSHD         string `json:"sshd"`
				Provisioning *struct {
					Recorded bool `json:"recorded"`
				} `json:"provisioning"`
			} `json:"container"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Hosts) != labHosts {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, h := range doc.Hosts {
		c := h.Container
		if c.State == "absent" {
			continue
		}
		if c.State != "running" || c.Provisioning == nil || !c.Provisioning.Recorded || c.SSHD != "listening" {
			t.Errorf("after a signal at %s, %s is half set up: %+v", when, h.Host, c)
		}
	}
}
