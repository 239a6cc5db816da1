//go:build e2e

package e2e

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12 on the lab: cvs init writes a cluster file for the lab's hosts
// that cvs status uses as it is (host keys recorded with --yes).
func TestInitOnTheLab(t *testing.T) {
	runsIn(t, apiPass)
	sshOnly(t, "cvs init scans the hosts' SSH host keys")
	l := Lab(t)
	dir := t.TempDir()
	file, kh := filepath.Join(dir, "cluster.toml"), filepath.Join(dir, "known_hosts")
	var hosts []string
	for _, h := range l.Hosts()[:labHosts] {
		hosts = append(hosts, h.Addr.String())
	}
	out, errOut, code := runCVS(t, "init", "--hosts", strings.Join(hosts, ","), "--user", "root", "--identity-file", l.IdentityFile(),
		"--known-hosts", kh, "--image", l.WorkloadImage(), "--name", "e2e-init", "-o", file, "--yes")
	if code != 0 {
		t.Fatalf("init: exit %d\n%s\n%s", code, out, errOut)
	}
	doc, code := statusJSONFile(t, file)
	if code != 0 || len(doc.Hosts) != labHosts {
		t.Fatalf("status with the file init wrote: exit %d %+v", code, doc)
	}
}

// Issue 12 on the lab: a run stores each step's output per host, cvs logs
// prints it, and --junit writes a testcase per step and host with the
// failing output.
func TestLogsAndJUnitOnTheLab(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-logs"
	useContainer(t, name)
	suites := `
[suites.check]
[[suites.check.steps]]
name = "probe"
run = """
echo "checking $(hostname)"
if [ "$(hostname)" = host2 ]; then echo "E: ECC errors on GPU 3" >&2; exit 4; fi
"""
`
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
	junit := filepath.Join(t.TempDir(), "junit.xml")
	_, errOut, code := runCVS(t, "--cluster", file, "run", "check", "--junit", junit)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (host2 fails)\n%s", code, errOut)
	}
	out, _, code := runCVS(t, "logs", "--host", cvsHost(t, "host2"))
	if code != 0 || !strings.Contains(out, "err| E: ECC errors on GPU 3") || !strings.Contains(out, "out| checking host2") || strings.Contains(out, "host1") {
		t.Errorf("cvs logs --host host2: exit %d\n%s", code, out)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil || doc.Tests != labHosts || doc.Failures != 1 {
		t.Fatalf("junit (%v):\n%s", err, data)
	}
	for _, c := range doc.Suites[0].Cases {
		if strings.HasSuffix(c.Name, cvsHost(t, "host2")) != (c.Failure != nil) {
			t.Errorf("case %s: failure %v", c.Name, c.Failure)
		}
		if c.Failure != nil && !strings.Contains(c.Failure.Text, "ECC errors") {
			t.Errorf("the failure lacks the output: %q", c.Failure.Text)
		}
	}
}
