package main

// The command layer run in-process against real OpenSSH sshd hosts on
// loopback: flags, output and exit codes as an operator sees them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	"github.com/cvs-tool/cvs/history"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/redact"
	"github.com/cvs-tool/cvs/session"
)

func cvs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// farmCluster writes a cluster file for the farm's hosts (plus extra host
// entries) and returns its path.
func farmCluster(t *testing.T, f *sshdfarm.Farm, extraHosts ...string) string {
	t.Helper()
	var hosts []string
	for _, h := range f.Hosts {
		hosts = append(hosts, fmt.Sprintf("%q", h.HostPort()))
	}
	for _, h := range extraHosts {
		hosts = append(hosts, fmt.Sprintf("%q", h))
	}
	text := fmt.Sprintf(`user = %q
identity_file = %q
known_hosts = %q
connect_timeout = "5s"
hosts = [%s]
[container]
image = "cvs-test/none:1"
name = "cvs-cli-test"
`, f.User, f.ClientKey, f.KnownHosts, strings.Join(hosts, ", "))
	p := filepath.Join(t.TempDir(), "cluster.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// perHost prints the address the host's sshd was reached on.
var perHost = []string{"sh", "-c", `set -- $SSH_CONNECTION; echo "$3"`}

func TestExecPrefixesEveryHost(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 3, Subnet: "127.0.50."})
	file := farmCluster(t, f)
	out, errOut, code := cvs(t, "--cluster", file, "exec", "--", perHost[0], perHost[1], perHost[2])
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, h := range f.Hosts {
		if !strings.Contains(out, h.HostPort()+": "+h.Addr+"\n") && !strings.Contains(out, h.HostPort()+":  "+h.Addr) {
			t.Errorf("no prefixed line for %s in:\n%s", h.HostPort(), out)
		}
	}
}

func TestExecGroupFoldsIdenticalOutput(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 3, Subnet: "127.0.51."})
	file := farmCluster(t, f)
	out, _, code := cvs(t, "--cluster", file, "exec", "--group", "--", "echo", "same everywhere")
	if code != 0 || strings.Count(out, "same everywhere") != 1 || !strings.Contains(out, "(3)") {
		t.Fatalf("exit %d, identical outputs not folded into one block:\n%s", code, out)
	}
	out, _, code = cvs(t, "--cluster", file, "exec", "--group", "--", perHost[0], perHost[1], perHost[2])
	if code != 0 || strings.Count(out, "(1)") != 3 {
		t.Fatalf("exit %d, distinct outputs must stay in 3 blocks:\n%s", code, out)
	}
}

func TestExecJSONAndFailureExitCodes(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 3, Subnet: "127.0.52."})
	file := farmCluster(t, f)
	fail := f.Hosts[1].Addr
	out, _, code := cvs(t, "--cluster", file, "--json", "exec", "--", "sh", "-c", `set -- $SSH_CONNECTION; echo "$3"; [ "$3" != `+fail+` ] || { echo bad >&2; exit 7; }`)
	if code != 1 {
		t.Fatalf("exit %d, want 1 when the command fails on one host\n%s", code, out)
	}
	var doc session.ExecReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(doc.Hosts) != 3 || doc.Handshakes != 3 {
		t.Fatalf("hosts %d handshakes %d", len(doc.Hosts), doc.Handshakes)
	}
	for i, r := range doc.Hosts {
		wantCode := 0
		if i == 1 {
			wantCode = 7
		}
		if r.Host != f.Hosts[i].HostPort() || r.ExitCode != wantCode || r.Stdout != f.Hosts[i].Addr+"\n" {
			t.Errorf("host %d: %+v", i, r)
		}
	}
	if doc.Hosts[1].Stderr != "bad\n" {
		t.Errorf("stderr of the failing host: %q", doc.Hosts[1].Stderr)
	}
}

func TestExecUnreachableHostIsExit3AndOthersStillRun(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 2, Subnet: "127.0.53."})
	file := farmCluster(t, f, "127.0.53.99:1") // nothing listens there
	out, errOut, code := cvs(t, "--cluster", file, "exec", "--", "echo", "hi")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	if strings.Count(out, "hi\n") != 2 {
		t.Errorf("reachable hosts must still run the command:\n%s", out)
	}
	if !strings.Contains(errOut, "127.0.53.99:1: connection-refused") {
		t.Errorf("the refused host is not named with its error kind:\n%s", errOut)
	}
}

func TestExecHostSelection(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 3, Subnet: "127.0.54."})
	file := farmCluster(t, f)
	out, _, code := cvs(t, "--cluster", file, "--json", "exec", "--hosts", f.Hosts[2].HostPort(), "--", "true")
	var doc session.ExecReport
	json.Unmarshal([]byte(out), &doc)
	if code != 0 || len(doc.Hosts) != 1 || doc.Hosts[0].Host != f.Hosts[2].HostPort() || doc.Handshakes != 1 {
		t.Fatalf("--hosts: exit %d %s", code, out)
	}
	out, _, code = cvs(t, "--cluster", file, "--json", "exec", "--head", "--", "true")
	json.Unmarshal([]byte(out), &doc)
	if code != 0 || len(doc.Hosts) != 1 || doc.Hosts[0].Host != f.Hosts[0].HostPort() {
		t.Fatalf("--head: exit %d %s", code, out)
	}
	_, errOut, code := cvs(t, "--cluster", file, "exec", "--hosts", "nosuch", "--", "true")
	if code != 2 || !strings.Contains(errOut, "nosuch not in") {
		t.Fatalf("unknown --hosts: exit %d %s", code, errOut)
	}
}

func TestExecTimeoutIsAFailure(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.55."})
	_, errOut, code := cvs(t, "--cluster", farmCluster(t, f), "exec", "--timeout", "500ms", "--", "sleep", "30")
	if code != 1 || !strings.Contains(errOut, "timed out after") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// Hosts without a working Docker daemon are reachable but not usable:
// status says why and exits 3.
func TestStatusWithoutDocker(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 2, Subnet: "127.0.56."})
	file := farmCluster(t, f, "127.0.56.99:1")
	out, _, code := cvs(t, "--cluster", file, "--json", "status")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, out)
	}
	var doc session.StatusReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.SchemaVersion != 1 || len(doc.Hosts) != 3 || doc.Container != "cvs-cli-test" {
		t.Fatalf("doc = %+v", doc)
	}
	for _, h := range doc.Hosts[:2] {
		if !h.Reachable || h.DockerVersion != "" || (h.ErrorKind != "docker-missing" && h.ErrorKind != "docker-unavailable") {
			t.Errorf("host without docker: %+v", h)
		}
		if h.Container.State != "unknown" {
			t.Errorf("%s: container state %q; a host whose Docker cannot be asked is unknown, never absent", h.Host, h.Container.State)
		}
	}
	if u := doc.Hosts[2]; u.Reachable || u.Container.State != "unknown" || u.ErrorKind != "connection-refused" {
		t.Errorf("unreachable host: %+v", u)
	}
	if doc.Summary.Reachable != 2 || doc.Summary.Problems != 3 {
		t.Errorf("summary = %+v", doc.Summary)
	}
	out, _, _ = cvs(t, "--cluster", file, "status")
	for _, want := range []string{"HOST", "CONTAINER", "unknown", "connection-refused", "3 host(s): 2 reachable"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q:\n%s", want, out)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("hosts = [\"a\"]\nprot = 1\nmax_paralel = 3\n"), 0o600)
	for _, args := range [][]string{
		{"--cluster", bad, "validate"},
		{"--cluster", bad, "status"},
		{"--cluster", bad, "exec", "--", "true"},
		{"--no-such-flag"},
		{"--cluster", bad, "exec"},
		{"--log-level", "loud", "version"},
		// Issue 23: an unknown command, an unknown shell, negative
		// durations and counts.
		{"stat"},
		{"completion", "tcsh"},
		{"--cluster", bad, "exec", "--timeout", "-1s", "--", "true"},
		{"history", "prune", "--keep", "-5"},
	} {
		_, errOut, code := cvs(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	_, errOut, _ := cvs(t, "--cluster", bad, "validate")
	if !strings.Contains(errOut, "bad.toml:2: prot") || !strings.Contains(errOut, "bad.toml:3: max_paralel: unknown key; did you mean \"max_parallel\"") {
		t.Errorf("validate must list every problem with its line:\n%s", errOut)
	}
}

func TestClusterFileFromEnvironment(t *testing.T) {
	t.Setenv("CVS_CLUSTER", "../../examples/cluster.toml")
	out, errOut, code := cvs(t, "validate")
	if code != 0 || !strings.Contains(out, "examples/cluster.toml is valid") {
		t.Fatalf("exit %d %s %s", code, out, errOut)
	}
}

// Issue 9 item 7: validate and list never print [env], [container.env] or
// a step's env values (CI logs keep them) unless --show-secrets.
func TestValidateRedactsSecrets(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.toml")
	text := `hosts = ["a"]
[env]
API_TOKEN = "tok-s3cret"
[container]
image = "x:1"
[container.env]
DB_PASS = "hunter2"
FROM_ENV = { env = "CVS_CLI_TEST_SECRET" }
[suites.s]
[[suites.s.steps]]
name = "one"
run = "true"
[suites.s.steps.env]
STEP_KEY = "k3y"
`
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CVS_CLI_TEST_SECRET", "from-env-s3cret")
	for _, args := range [][]string{{"validate"}, {"--json", "validate"}, {"--json", "list"}} {
		out, errOut, code := cvs(t, append([]string{"--cluster", p}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errOut)
		}
		for _, secret := range []string{"tok-s3cret", "hunter2", "k3y"} {
			if strings.Contains(out, secret) {
				t.Errorf("%v prints %q:\n%s", args, secret, out)
			}
		}
		if !strings.Contains(out, "API_TOKEN") && args[len(args)-1] == "validate" {
			t.Errorf("%v: the names must stay:\n%s", args, out)
		}
	}
	out, _, _ := cvs(t, "--cluster", p, "validate", "--show-secrets")
	for _, secret := range []string{"tok-s3cret", "hunter2", "k3y"} {
		if !strings.Contains(out, secret) {
			t.Errorf("--show-secrets does not print %q:\n%s", secret, out)
		}
	}
	// Issue 21 item 11: a value from the environment or a file is never
	// printed, not even with --show-secrets: its source is.
	if strings.Contains(out, "from-env-s3cret") || !strings.Contains(out, "<from $CVS_CLI_TEST_SECRET>") {
		t.Errorf("--show-secrets and a value from the environment:\n%s", out)
	}
}

// Issue 21 item 11: log lines (host failures quote stderr) never show a
// secret of the loaded cluster file.
func TestLogLinesMaskSecrets(t *testing.T) {
	var errb bytes.Buffer
	a := &app{stderr: &errb}
	a.mask.Store(redact.New([]string{"hunter22"}))
	a.log = log.NewWithOptions(logWriter{a}, log.Options{})
	a.log.Warn("docker run failed", "host", "n1", "err", "bad env line PW=hunter22")
	if strings.Contains(errb.String(), "hunter22") || !strings.Contains(errb.String(), "PW=***") {
		t.Errorf("log line: %s", errb.String())
	}
}

func TestHistoryListsAndShows(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	out, _, code := cvs(t, "history")
	if code != 0 || !strings.Contains(out, "ID") {
		t.Fatalf("empty history: exit %d\n%s", code, out)
	}
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for i, id := range []string{"ab12cd34ef560001", "ab12ff0000000002"} {
		if _, err := history.Save(&history.Record{ID: id, Command: "run", Suite: "test", Image: "reg:5000/w:1", EffectiveImage: "reg:5000/w:1",
			Start: start.Add(time.Duration(i) * time.Hour), End: start.Add(time.Duration(i)*time.Hour + time.Minute), ExitCode: i,
			Hosts: []history.HostRecord{{Host: "n1", Action: "attach", ContainerID: "3f2a1b9c8d7e6f5a"}}}); err != nil {
			t.Fatal(err)
		}
	}
	out, _, code = cvs(t, "history")
	if code != 0 || strings.Index(out, "ab12ff0000000002") > strings.Index(out, "ab12cd34ef560001") {
		t.Errorf("history (newest first): exit %d\n%s", code, out)
	}
	out, _, code = cvs(t, "history", "show", "ab12c")
	if code != 0 || !strings.Contains(out, "run ab12cd34ef560001") || !strings.Contains(out, "3f2a1b9c8d7e") {
		t.Errorf("show by prefix: exit %d\n%s", code, out)
	}
	_, errOut, code := cvs(t, "history", "show", "ab12")
	if code == 0 || !strings.Contains(errOut, "names 2 runs") {
		t.Errorf("ambiguous prefix: exit %d\n%s", code, errOut)
	}
	out, _, code = cvs(t, "history", "prune", "--keep", "1")
	if code != 0 || !strings.Contains(out, "removed run ab12cd34ef560001") || !strings.Contains(out, "1 run(s) removed") {
		t.Errorf("prune: exit %d\n%s", code, out)
	}
	if out, _, _ := cvs(t, "history"); strings.Contains(out, "ab12cd34ef560001") || !strings.Contains(out, "ab12ff0000000002") {
		t.Errorf("after prune:\n%s", out)
	}
}

// cvs report writes the run's HTML page into its folder by default, to -o
// FILE or stdout when told, JUnit XML with --junit, and prints each path.
func TestReportWritesHTMLAndJUnit(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	rec := &history.Record{ID: "cd34ef5600000001", Command: "run", Suite: "check", Start: start, End: start.Add(time.Minute), ExitCode: 1,
		Hosts: []history.HostRecord{{Host: "n1", Action: "launch"}, {Host: "n2", Action: "launch"}},
		Steps: []history.StepRecord{{Step: "probe", Host: "n1"}, {Step: "probe", Host: "n2", ExitCode: 4}}}
	logs, err := history.NewLogs(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, done, err := logs.Open("probe", "n2")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stderr, "E: ECC errors on GPU 3")
	done()
	dir, err := history.Save(rec)
	if err != nil {
		t.Fatal(err)
	}
	isReport := func(file string) bool {
		data, err := os.ReadFile(file)
		return err == nil && strings.HasPrefix(string(data), "<!DOCTYPE html>") && strings.Contains(string(data), "E: ECC errors on GPU 3")
	}

	out, errOut, code := cvs(t, "report")
	if want := filepath.Join(dir, "report.html"); code != 0 || out != want+"\n" || !isReport(want) {
		t.Errorf("report: exit %d, printed %q, want %s\n%s", code, out, want, errOut)
	}
	html, junit := filepath.Join(t.TempDir(), "r.html"), filepath.Join(t.TempDir(), "j.xml")
	out, errOut, code = cvs(t, "report", "cd34", "-o", html, "--junit", junit)
	data, _ := os.ReadFile(junit)
	if code != 0 || out != html+"\n"+junit+"\n" || !isReport(html) || !strings.Contains(string(data), `failures="1"`) {
		t.Errorf("report -o --junit: exit %d, printed %q\n%s\n%s", code, out, errOut, data)
	}
	out, errOut, code = cvs(t, "report", "-o", "-", "--junit", junit)
	if code != 0 || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.HasSuffix(out, "</html>\n") || errOut != junit+"\n" {
		t.Errorf("report -o -: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code = cvs(t, "report", "-o", "-", "--junit", "-"); code != 2 {
		t.Errorf("-o - --junit -: exit %d\n%s", code, errOut)
	}
	if _, errOut, code = cvs(t, "report", "ffff"); code == 0 || !strings.Contains(errOut, `no run "ffff"`) {
		t.Errorf("report of no run: exit %d\n%s", code, errOut)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(html), ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// --site and $CVS_SITE select the rewrite rules; validate shows both
// images and prints the configured one (its output loads again).
func TestSiteFlag(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.toml")
	os.WriteFile(p, []byte(`hosts = ["a"]
[container]
image = "registry.example:5000/w:1"
[sites.lab]
[[sites.lab.image.rewrite]]
match = 're:registry\.example:5000/(.*)'
replace = "172.29.0.1:5000/$1"
`), 0o600)
	out, _, code := cvs(t, "--cluster", p, "--site", "lab", "validate")
	if code != 0 || !strings.Contains(out, "# site lab: image registry.example:5000/w:1 → 172.29.0.1:5000/w:1") || !strings.Contains(out, `image = "registry.example:5000/w:1"`) {
		t.Errorf("validate --site: exit %d\n%s", code, out)
	}
	// A site whose rules match nothing is named in a warning (issue 21
	// item 8); validate still succeeds.
	os.WriteFile(p, []byte(`hosts = ["a"]
[container]
image = "docker.io/w:1"
[sites.lab]
[[sites.lab.image.rewrite]]
match = 're:registry\.example:5000/(.*)'
replace = "172.29.0.1:5000/$1"
[sites.eu]
`), 0o600)
	_, errOut, code := cvs(t, "--cluster", p, "--site", "lab", "validate")
	if code != 0 || !strings.Contains(errOut, `site "lab"`) || !strings.Contains(errOut, "match nothing") {
		t.Errorf("validate --site with rules matching nothing: exit %d, no warning naming the site:\n%s", code, errOut)
	}
	_, errOut, code = cvs(t, "--cluster", p, "--site", "mars", "validate")
	if code != 2 || !strings.Contains(errOut, `site "mars"`) || !strings.Contains(errOut, "eu, lab") {
		t.Errorf("--site mars: exit %d\n%s", code, errOut)
	}
	t.Setenv("CVS_SITE", "mars")
	_, errOut, code = cvs(t, "--cluster", p, "validate")
	if code != 2 || !strings.Contains(errOut, `site "mars"`) {
		t.Errorf("unknown site from $CVS_SITE: exit %d\n%s", code, errOut)
	}
}

// cvs version says something useful also for a plain go build: never a
// bare "dev" when the build recorded its commit.
func TestVersion(t *testing.T) {
	out, _, code := cvs(t, "--json", "version")
	var b buildInfo
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.Version == "" || !strings.HasPrefix(b.Go, "go") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if b.Commit != "" && b.Version == "dev" {
		t.Errorf("a build with commit %s says only dev", b.Commit)
	}
}

// cvs init writes a cluster file that works as it is: the host keys are
// recorded (with --yes), status reaches every host over strict checking;
// an existing file is never overwritten without --force.
func TestInitWritesAWorkingClusterFile(t *testing.T) {
	f := sshdfarm.StartT(t, sshdfarm.Options{N: 2, Subnet: "127.0.57."})
	dir := t.TempDir()
	file, kh := filepath.Join(dir, "cluster.toml"), filepath.Join(dir, "known_hosts")
	var hosts []string
	for _, h := range f.Hosts {
		hosts = append(hosts, h.HostPort())
	}
	args := []string{"init", "--hosts", strings.Join(hosts, ","), "--user", f.User, "--identity-file", f.ClientKey,
		"--known-hosts", kh, "--image", "cvs-test/none:1", "-o", file}
	out, errOut, code := cvs(t, args...)
	if code != 2 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("without a terminal or --yes: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cvs(t, append(args, "--yes")...)
	if code != 0 || strings.Count(out, "new") < 2 {
		t.Fatalf("init: exit %d\n%s\n%s", code, out, errOut)
	}
	var doc session.StatusReport
	out, _, _ = cvs(t, "--cluster", file, "--json", "status")
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Hosts) != 2 {
		t.Fatalf("status with the written file: %v\n%s", err, out)
	}
	for _, h := range doc.Hosts {
		if !h.Reachable {
			t.Errorf("%s not reachable with the written file: %s", h.Host, h.Error)
		}
	}
	if _, errOut, code := cvs(t, append(args, "--yes")...); code != 2 || !strings.Contains(errOut, "--force") {
		t.Errorf("overwrite without --force: exit %d %s", code, errOut)
	}
	out, _, code = cvs(t, append(args, "--yes", "--force")...)
	if code != 0 || !strings.Contains(out, "already known") {
		t.Errorf("again: exit %d\n%s", code, out)
	}
}

// Shell completion offers the cluster file's suites and hosts.
func TestCompletion(t *testing.T) {
	out, _, _ := cvs(t, "--cluster", "../../examples/cluster.toml", "__complete", "run", "")
	if !strings.Contains(out, "install\tInstall the validation tools") || !strings.Contains(out, "test\t") {
		t.Errorf("suites:\n%s", out)
	}
	out, _, _ = cvs(t, "--cluster", "../../examples/cluster.toml", "__complete", "exec", "--hosts", "")
	if !strings.Contains(out, "node01") || !strings.Contains(out, "node04") {
		t.Errorf("hosts:\n%s", out)
	}
}

// image ls shows the partial files a killed run left, with their size;
// image prune reclaims them (issue 21 item 7).
func TestImageLsAndPrunePartialFiles(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("TMPDIR", t.TempDir())
	dir := filepath.Join(cache, "cvs", "images")
	os.MkdirAll(dir, 0o700)
	p := filepath.Join(dir, ".obtain.1.tar")
	os.WriteFile(p, make([]byte, 3<<20), 0o600)
	old := time.Now().Add(-3 * time.Hour)
	os.Chtimes(p, old, old)
	out, _, code := cvs(t, "image", "ls")
	if code != 0 || !strings.Contains(out, "(partial)") || !strings.Contains(out, p) || !strings.Contains(out, "3.0 MiB") {
		t.Errorf("image ls: exit %d\n%s", code, out)
	}
	out, _, code = cvs(t, "image", "prune", "--keep", "0")
	if code != 0 || !strings.Contains(out, "1 partial file(s) removed") || !strings.Contains(out, "3.0 MiB freed") {
		t.Errorf("image prune: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the partial file survives prune")
	}
}

// Issue 21 item 12 (seed 002): an image-digest prefix that names several
// cached images lists them and exits 2, before any host is reached.
func TestImagePushAmbiguousPrefixExit2(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "cvs", "images")
	os.MkdirAll(dir, 0o700)
	for i, id := range []string{"sha256:abcd1" + strings.Repeat("0", 59), "sha256:abcd2" + strings.Repeat("0", 59)} {
		file := filepath.Join(dir, fmt.Sprintf("w%d.tar", i))
		os.WriteFile(file, nil, 0o600)
		side := fmt.Sprintf(`{"file": %q, "ref": "reg:5000/w:%d", "image_id": %q, "size": 1}`, file, i, id)
		os.WriteFile(file+".json", []byte(side), 0o600)
	}
	p := filepath.Join(t.TempDir(), "cluster.toml")
	os.WriteFile(p, []byte("hosts = [\"192.0.2.1\"]\n[container]\nimage = \"reg:5000/w:1\"\n"), 0o600)
	_, errOut, code := cvs(t, "--cluster", p, "image", "push", "abcd")
	if code != 2 || !strings.Contains(errOut, "abcd10000000 reg:5000/w:0") || !strings.Contains(errOut, "abcd20000000 reg:5000/w:1") {
		t.Errorf("exit %d, want 2 with both images listed:\n%s", code, errOut)
	}
}

// Issue 23: a record of 500 hosts shows 40 host rows and a line per
// step, the failing hosts named; --verbose shows every row.
func TestHistoryShowFoldsManyHosts(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	rec := &history.Record{ID: "cd34000000000001", Command: "run", Suite: "test", Image: "w:1", EffectiveImage: "w:1", Start: start, End: start.Add(time.Minute)}
	for i := 1; i <= 500; i++ {
		h := fmt.Sprintf("node%03d", i)
		rec.Hosts = append(rec.Hosts, history.HostRecord{Host: h, Action: "launch"})
		for _, step := range []string{"install", "test"} {
			s := history.StepRecord{Step: step, Host: h, DurationMS: 1000}
			if step == "test" && (i == 4 || i == 11) {
				s.ExitCode = 1
			}
			rec.Steps = append(rec.Steps, s)
		}
	}
	if _, err := history.Save(rec); err != nil {
		t.Fatal(err)
	}
	out, _, code := cvs(t, "history", "show", "cd34")
	if code != 0 || !strings.Contains(out, "\nnode040  launch") || strings.Contains(out, "node041  launch") || !strings.Contains(out, "+460 more (all in --json)\n") ||
		!strings.Contains(out, "install  ok 500 · slowest 1s node001\ntest     ok 498 · failed 2: node[004,011] · slowest 1s node001\n  node004  exit 1  1s\n  node011  exit 1  1s\n") {
		t.Errorf("history show of 500 hosts: exit %d\n%s", code, out)
	}
	if n := strings.Count(out, "\n"); n > 60 {
		t.Errorf("history show of 500 hosts: %d lines", n)
	}
	out, _, code = cvs(t, "history", "show", "--verbose", "cd34")
	if code != 0 || !strings.Contains(out, "node500  launch") || strings.Contains(out, "more (all in --json)") || strings.Count(out, "\ntest     node") != 500 {
		t.Errorf("history show --verbose: exit %d, %d lines", code, strings.Count(out, "\n"))
	}
}

// Issue 23: JSON is for scripts, not pages: no HTML escaping of < > &.
func TestJSONIsNotHTMLEscaped(t *testing.T) {
	out, _, code := cvs(t, "--json", "--cluster", filepath.Join(t.TempDir(), "a<b&c>.toml"), "status")
	if code == 0 || !strings.Contains(out, "a<b&c>.toml") || strings.Contains(out, `\u003c`) {
		t.Errorf("exit %d, want the file name as it is:\n%s", code, out)
	}
}
