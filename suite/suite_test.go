package suite

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
)

func TestScriptExportsEnvironment(t *testing.T) {
	s := Script(map[string]string{"A": "cluster", "B": "it's b"}, cluster.Step{Run: `echo "$A|$B|$C"`, Env: map[string]string{"A": "step", "C": "$HOME"}})
	out, err := exec.Command("bash", "-eo", "pipefail", "-c", s).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "step|it's b|$HOME\n" {
		t.Errorf("got %q from:\n%s", out, s)
	}
}

func TestSummaryTable(t *testing.T) {
	var b strings.Builder
	Summary(&b, []Result{{Step: "install", Host: "h1", Duration: 1500 * time.Millisecond},
		{Step: "install", Host: "h2", ExitCode: -1, Error: "timed out after 1m0s (step timeout); the step was killed"}})
	out := b.String()
	for _, want := range []string{"STEP", "install  h1", "1.5s", "-1 (timed out"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
