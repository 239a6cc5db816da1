//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 21 item 11 on the lab: [container.env] values from cvs's own
// environment and from a file, and a step's env value from the
// environment, echoed by a step in the containers, are *** in what cvs
// prints (plain, grouped, --json), in the logs, the run record, the HTML
// report and JUnit, and never appear in any of them.
func TestSecretsMaskedOnTheLab(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-secrets"
	useContainer(t, name)
	fromEnv := fmt.Sprintf("env-S3CRET-%d", os.Getpid())
	fromFile := fmt.Sprintf("file-S3CRET-%d", os.Getpid())
	secrets := []string{fromEnv, fromFile}
	t.Setenv("CVS_E2E_SECRET", fromEnv)
	secretFile := filepath.Join(t.TempDir(), "db-password")
	if err := os.WriteFile(secretFile, []byte(fromFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Suites is appended after [container]: [container.env] goes there.
	suites := fmt.Sprintf(`
[container.env]
REGISTRY_TOKEN = { env = "CVS_E2E_SECRET" }
DB_PASSWORD = { file = %q }

[suites.leak]
[[suites.leak.steps]]
name = "echo"
env = { STEP_TOKEN = { env = "CVS_E2E_SECRET" } }
run = """
echo "token=$REGISTRY_TOKEN pw=$DB_PASSWORD step=$STEP_TOKEN"
printf '%%s' "$DB_PASSWORD" >&2; echo >&2
if [ "$(hostname)" = host2 ]; then exit 4; fi
"""
`, secretFile)
	if viaSlurm {
		// Issue 20 item 10: through Slurm the secrets would cross the
		// cluster network in clear; refused unless accepted.
		refused := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
		if _, errOut, code := runCVS(t, "--cluster", refused, "run", "leak", "--plain"); code != 2 || !strings.Contains(errOut, "cleartext_secrets = true") {
			t.Fatalf("a Slurm cluster file with secrets: exit %d, want 2 asking for cleartext_secrets\n%s", code, clip(errOut))
		}
	}
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites, CleartextSecrets: true})
	check := func(where, got string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Errorf("%s shows the secret %q:\n%s", where, s, clip(got))
			}
		}
		if !strings.Contains(got, "token=*** pw=*** step=***") {
			t.Errorf("%s does not show the masked line:\n%s", where, clip(got))
		}
	}

	out, errOut, code := runCVS(t, "--cluster", file, "run", "leak", "--plain")
	if code != 1 {
		t.Fatalf("plain: exit %d, want 1 (host2 fails)\n%s", code, errOut)
	}
	check("the plain output", out+errOut)
	out, errOut, code = runCVS(t, "--cluster", file, "run", "leak", "--group")
	if code != 1 {
		t.Fatalf("grouped: exit %d, want 1\n%s", code, errOut)
	}
	check("the grouped output", out+errOut)

	junit := filepath.Join(t.TempDir(), "junit.xml")
	out, errOut, code = runCVS(t, "--cluster", file, "--json", "run", "leak", "--junit", junit)
	if code != 1 {
		t.Fatalf("--json: exit %d, want 1\n%s", code, errOut)
	}
	check("--json", out+errOut)
	var rep struct {
		Record string `json:"record"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Record == "" {
		t.Fatalf("--json document (%v):\n%s", err, clip(out))
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	check("JUnit", string(data))

	logs, _, code := runCVS(t, "logs")
	if code != 0 {
		t.Fatalf("cvs logs: exit %d", code)
	}
	check("cvs logs", logs)
	var stored strings.Builder
	filepath.WalkDir(rep.Record, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			fmt.Fprintf(&stored, "== %s\n%s\n", p, b)
		}
		return nil
	})
	check("the record and the logs on disk", stored.String())

	report := filepath.Join(t.TempDir(), "report.html")
	if _, errOut, code := runCVS(t, "report", "-o", report); code != 0 {
		t.Fatalf("cvs report: exit %d\n%s", code, errOut)
	}
	html, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(html), s) {
			t.Errorf("the HTML report shows the secret %q", s)
		}
	}
	if !strings.Contains(string(html), "token=*** pw=*** step=***") {
		t.Errorf("the HTML report does not show the masked output")
	}
}
