//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// statusDoc is the part of `cvs status --json` these tests read.
type statusDoc struct {
	Hosts []struct {
		Host          string `json:"host"`
		Reachable     bool   `json:"reachable"`
		DockerVersion string `json:"docker_version"`
		ErrorKind     string `json:"error_kind"`
		Container     struct {
			State string `json:"state"`
			ID    string `json:"id"`
			SSHD  string `json:"sshd"`
		} `json:"container"`
	} `json:"hosts"`
}

func statusJSONFile(t *testing.T, file string) (statusDoc, int) {
	t.Helper()
	return statusJSON(t, "--cluster", file)
}

func statusJSON(t *testing.T, args ...string) (statusDoc, int) {
	t.Helper()
	out, _, code := runCVS(t, append(args, "--json", "status")...)
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("cvs status --json: %v\n%s", err, out)
	}
	return doc, code
}

func TestStatusShowsEveryHostWithDocker(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	doc, code := statusJSON(t)
	if code != 0 || len(doc.Hosts) != labHosts {
		t.Fatalf("exit %d, %d hosts", code, len(doc.Hosts))
	}
	for _, h := range doc.Hosts {
		if !h.Reachable || !strings.HasPrefix(h.DockerVersion, "20.10") {
			t.Errorf("%s: reachable %v docker %q", h.Host, h.Reachable, h.DockerVersion)
		}
	}
	out, _, _ := runCVS(t, "status")
	for _, h := range Lab(t).Hosts()[:labHosts] {
		if !strings.Contains(out, cvsHost(t, h.Name)) {
			t.Errorf("status table does not show %s:\n%s", cvsHost(t, h.Name), out)
		}
	}
}

// A host whose sshd (through Slurm: slurmd) is stopped is reported
// unreachable (exit 3) while the others are still probed and shown.
func TestStatusUnreachableHost(t *testing.T) {
	runsIn(t, apiPass|slurmPass)
	t.Cleanup(cutOff(t, "host2"))
	kind := "connection-refused"
	if viaSlurm {
		kind = "unreachable" // srun could not launch the task there
	}
	doc, code := statusJSON(t)
	if code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	for _, h := range doc.Hosts {
		down := h.Host == cvsHost(t, "host2")
		if down && (h.Reachable || h.ErrorKind != kind || h.Container.State != "unknown") {
			t.Errorf("stopped host: %+v", h)
		}
		if !down && (!h.Reachable || h.DockerVersion == "") {
			t.Errorf("other host hidden by the failure: %+v", h)
		}
	}
}

// A host whose host key changed is refused under strict checking, naming
// the mismatch; the others still work.
func TestStrictRefusesChangedHostKey(t *testing.T) {
	runsIn(t, apiPass)
	sshOnly(t, "host keys are SSH's")
	l := Lab(t)
	ctx := testCtx(t, 2*time.Minute)
	if _, err := l.RotateHostKey(ctx, "host3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupCtx(time.Minute, func(ctx context.Context) { l.RefreshKnownHosts(ctx) }) })
	out, errOut, code := runCVS(t, "exec", "--", "true")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, addrOf(t, "host3")+": host-key-mismatch") || !strings.Contains(errOut, "SHA256:") {
		t.Errorf("the mismatch is not explained:\n%s", errOut)
	}
	if strings.Count(errOut, "host-key-mismatch") != 1 {
		t.Errorf("only host3 should be refused:\n%s", errOut)
	}
}

func TestExecGroupFolds(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	out, _, code := runCVS(t, "exec", "--group", "--", "hostname")
	if code != 0 || strings.Count(out, "(1)") != labHosts {
		t.Fatalf("exit %d: %d distinct hostnames must stay in %d blocks:\n%s", code, labHosts, labHosts, out)
	}
	for _, h := range hostNames(t) {
		if !strings.Contains(out, "\n"+h+"\n") {
			t.Errorf("no block for %s:\n%s", h, out)
		}
	}
	out, _, code = runCVS(t, "exec", "--group", "--", "cat", "/etc/os-release")
	if code != 0 || strings.Count(out, "(3)") != 1 || strings.Count(out, "PRETTY_NAME") != 1 {
		t.Fatalf("exit %d: identical os-release must fold into one block of 3:\n%s", code, out)
	}
}

// Issue 13: cvs talks to the lab's daemons through their Engine API (the
// SSH user is root), or through the docker CLI when CVS_DOCKER_ACCESS=cli
// (the tier's second pass); status shows which, and says why on the CLI.
func TestDockerAccessShownInStatus(t *testing.T) {
	runsIn(t, apiPass|cliPass)
	want := "api"
	if os.Getenv("CVS_DOCKER_ACCESS") == "cli" || viaSlurm {
		want = "cli"
	}
	out, _, code := runCVS(t, "--json", "status")
	var doc struct {
		Hosts []struct {
			Host   string `json:"host"`
			Access string `json:"docker_access"`
			Note   string `json:"docker_access_note"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc.Hosts) != labHosts {
		t.Fatalf("status: exit %d, %v\n%s", code, err, out)
	}
	for _, h := range doc.Hosts {
		if h.Access != want || (want == "cli") != (h.Note != "") {
			t.Errorf("%s: docker_access %q (%q), want %s", h.Host, h.Access, h.Note, want)
		}
	}
	table, _, _ := runCVS(t, "status")
	if !strings.Contains(table, " "+want+" ") {
		t.Errorf("the table does not show %s:\n%s", want, table)
	}
}

// Issue 20 item 4: srun carries a task's output in messages of at most
// 1 KiB and prints each as a line of its own, so an exit mark written
// after output without a final newline could be cut in two and never
// recognised ("ended without its exit status"). Output of the sizes
// around that cut, without a final newline, comes back whole on every
// host, with its exit status; over SSH the same.
func TestOutputWithoutNewlineAroundSrunsCut(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	for _, n := range []int{1000, 1023, 1024, 1030, 2048, 3000} {
		out, errOut, code := runCVS(t, "exec", "--group", "--", "sh", "-c", fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x`, n))
		xs := strings.Repeat("x", n)
		if code != 0 || strings.Count(out, "(3)") != 1 || !strings.Contains(out, "\n"+xs+"\n") || strings.Contains(out, xs+"x") {
			t.Errorf("%d bytes without a newline: exit %d, want every host's output whole in one block\n%s\n%s", n, code, clip(out), clip(errOut))
		}
	}
}
