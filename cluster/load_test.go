package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// load loads text as a cluster file; a text without a [container] table
// gets one with an image at its end (tests of other tables).
func load(t *testing.T, text string) (*Config, error) {
	t.Helper()
	if !strings.Contains(text, "[container") {
		text += "\n[container]\nimage = \"x:1\"\n"
	}
	return loadRaw(t, text)
}

// loadRaw loads text exactly as given.
func loadRaw(t *testing.T, text string) (*Config, error) {
	t.Helper()
	p := writeFile(t, t.TempDir(), "cluster.toml", text)
	return LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice"})
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want *LoadError, got %v", err)
	}
	return le.Lines()
}

func TestLoadExample(t *testing.T) {
	cfg, err := LoadWith("../examples/cluster.toml", LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Hosts); got != 6 {
		t.Errorf("hosts: got %d, want 6 (node01-04, 10.0.0.5, fd00::6)", got)
	}
	if h := cfg.Hosts[4]; h.User != "admin" || h.Port != 2222 || h.Addr != "10.0.0.5" {
		t.Errorf("admin@10.0.0.5:2222 parsed as %+v", h)
	}
	if h := cfg.Hosts[5]; h.Addr != "fd00::6" || h.Port != 22 {
		t.Errorf("[fd00::6]:22 parsed as %+v", h)
	}
	if cfg.Head().Name != "node01" {
		t.Errorf("head = %s", cfg.Head().Name)
	}
	if cfg.Container.Name != "cvs-alice" {
		t.Errorf("{user-id} not expanded in container.name: %q", cfg.Container.Name)
	}
	if cfg.Container.Lifetime != LifetimePersistent || cfg.Container.PullTimeout != 900*time.Second || cfg.Container.SSHDPort != 2224 {
		t.Errorf("container = %+v", cfg.Container)
	}
	if cfg.IdentityFiles[0] != "/home/alice/.ssh/id_ed25519" {
		t.Errorf("identity_file not expanded: %v", cfg.IdentityFiles)
	}
	if got := cfg.SuiteNames(); strings.Join(got, ",") != "install,test" {
		t.Errorf("suites = %v", got)
	}
	test, _ := cfg.Suite("test")
	if len(test.Steps) != 2 || test.Steps[1].On != OnHead || test.Steps[1].Env["VERBOSE"] != "1" || test.Steps[0].Timeout != 5*time.Minute {
		t.Errorf("suite test = %+v", test)
	}
}

// TestExampleShowsEveryKey keeps examples/cluster.toml complete: every key
// the loader knows must appear in it.
func TestExampleShowsEveryKey(t *testing.T) {
	text, err := os.ReadFile("../examples/cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := locateKeys(string(text))
	check := func(prefix string, keys []string) {
		for _, k := range keys {
			if _, ok := lines[join(prefix, k)]; !ok {
				t.Errorf("examples/cluster.toml does not show %s", join(prefix, k))
			}
		}
	}
	check("", topKeys)
	check("container", containerKeys)
	check("suites.install", suiteKeys)
	check("suites.test.steps.1", stepKeys)
	check("sites.eu.image.rewrite.0", rewriteKeys)
	for _, form := range []string{`{ env = "`, `{ file = "`} {
		if !strings.Contains(string(text), form) {
			t.Errorf("examples/cluster.toml does not show an env value written %s...", form)
		}
	}
}

// Site rewrite rules (issue 10): exact and regular-expression matches, the
// first match wins, $1 groups, applied in memory; bad rules and unknown
// sites are load errors with their lines.
func TestSiteRewrites(t *testing.T) {
	text := `hosts = ["a"]
[container]
image = "registry.example:5000/gpu/validation:2026.11"
[sites.exact]
[[sites.exact.image.rewrite]]
match = "registry.example:5000/gpu/validation:2026.11"
replace = "lab:5000/w:1"
[[sites.exact.image.rewrite]]
match = 're:.*'
replace = "never:1"
[sites.regex]
[[sites.regex.image.rewrite]]
match = "other:1"
replace = "nope:1"
[[sites.regex.image.rewrite]]
match = 're:registry\.example:5000/(.*)'
replace = "registry.eu.example/$1"
[sites.nomatch]
[[sites.nomatch.image.rewrite]]
match = 're:docker\.io/(.*)'
replace = "mirror/$1"
`
	p := writeFile(t, t.TempDir(), "cluster.toml", text)
	for site, want := range map[string]string{
		"":        "registry.example:5000/gpu/validation:2026.11",
		"exact":   "lab:5000/w:1",
		"regex":   "registry.eu.example/gpu/validation:2026.11",
		"nomatch": "registry.example:5000/gpu/validation:2026.11",
	} {
		cfg, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice", Site: site})
		if err != nil {
			t.Fatalf("site %q: %v", site, err)
		}
		if cfg.Container.Image != want || cfg.Container.ConfiguredImage != "registry.example:5000/gpu/validation:2026.11" || cfg.Site != site {
			t.Errorf("site %q: image %q (configured %q)", site, cfg.Container.Image, cfg.Container.ConfiguredImage)
		}
		// A site whose rules leave the image as it is says so (issue 21
		// item 8): the operator meant it to change.
		warned := strings.Join(cfg.Warnings, "\n")
		if site == "nomatch" {
			if !strings.Contains(warned, `site "nomatch"`) || !strings.Contains(warned, "registry.example:5000/gpu/validation:2026.11") {
				t.Errorf("site nomatch: no warning that its rules match nothing: %q", cfg.Warnings)
			}
		} else if warned != "" {
			t.Errorf("site %q: warnings %q", site, cfg.Warnings)
		}
	}
	b, _ := os.ReadFile(p)
	if string(b) != text {
		t.Error("the cluster file was edited")
	}
	_, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice", Site: "mars"})
	if err == nil || !strings.Contains(err.Error(), `site "mars"`) || !strings.Contains(err.Error(), "exact, nomatch, regex") {
		t.Errorf("unknown site: %v", err)
	}
	_, err = load(t, `hosts = ["a"]
[container]
image = "x:1"
[sites.bad]
[[sites.bad.image.rewrite]]
match = "re:(unclosed"
replace = "y:1"
[[sites.bad.image.rewrite]]
replace = "z:1"
`)
	all := strings.Join(problems(t, err), "\n")
	if !strings.Contains(all, ":6: sites.bad.image.rewrite[0].match") || !strings.Contains(all, "not a valid regular expression") || !strings.Contains(all, "rule 2 has no match") {
		t.Errorf("bad rules:\n%s", all)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := load(t, `hosts = ["a", "b"]`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "alice" || cfg.Hosts[0].User != "alice" || cfg.Hosts[0].Port != 22 {
		t.Errorf("default user/port: %+v", cfg.Hosts[0])
	}
	if cfg.HostKeyCheck != HostKeyStrict || cfg.ConnectTimeout != DefaultConnectTimeout || cfg.MaxParallel != DefaultMaxParallel {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	if cfg.KnownHosts != "/home/alice/.ssh/known_hosts" {
		t.Errorf("known_hosts = %s", cfg.KnownHosts)
	}
	if cfg.Container.Lifetime != LifetimePerRun || cfg.Container.Name != "cvs-alice" {
		t.Errorf("container defaults = %+v", cfg.Container)
	}
}

func TestEveryProblemReportedWithLine(t *testing.T) {
	_, err := load(t, `user = "root"
prot = 22
hosts = ["a", "a"]
connect_timeout = 10
host_key_check = "yes"

[container]
enabled = true
launch = false
lifetime = "persistent"
image = "img:1"
nmae = "x"

[[suites.test.steps]]
name = "s"
run = "true"
on = "everywhere"
timout = "1m"
`)
	got := problems(t, err)
	want := []string{
		`:2: prot: unknown key; did you mean "port"?`,
		`:3: hosts: a appears twice`,
		`:4: connect_timeout: must be a string, not an integer`,
		`:5: host_key_check: "yes" is not one of`,
		`:8: container.enabled: was removed; write lifetime = "per_run"`,
		`:9: container.launch: was removed; launch = true is now lifetime = "per_run", launch = false is now lifetime = "no_launch"`,
		`:12: container.nmae: unknown key; did you mean "name"?`,
		`container: name is missing; lifetime "persistent" needs a fixed container name`,
		`:17: suites.test.steps[0].on: "everywhere" is not "all" or "head"`,
		`:18: suites.test.steps[0].timout: unknown key; did you mean "timeout"?`,
	}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing problem %q in:\n%s", w, all)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), all)
	}
}

func TestParseErrorHasLine(t *testing.T) {
	_, err := load(t, "hosts = [\"a\"]\nuser = \"x\n")
	got := problems(t, err)
	if len(got) != 1 || !strings.Contains(got[0], "cluster.toml:2:") {
		t.Errorf("got %q", got)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := LoadWith(filepath.Join(t.TempDir(), "nope.toml"), LoadOptions{SSHConfig: "none", CurrentUser: "a"})
	got := problems(t, err)
	if !strings.Contains(got[0], "examples/cluster.toml") {
		t.Errorf("got %q", got)
	}
}

func TestHostEntries(t *testing.T) {
	for _, tc := range []struct {
		entry string
		want  []string // name|user|addr|port
		err   string
	}{
		{entry: "node1", want: []string{"node1||node1|0"}},
		{entry: "root@10.0.0.1:2222", want: []string{"10.0.0.1:2222|root|10.0.0.1|2222"}},
		{entry: "[fd00::1]:22", want: []string{"[fd00::1]:22||fd00::1|22"}},
		{entry: "[fd00::1]", want: []string{"fd00::1||fd00::1|0"}},
		{entry: "u@fd00::1", want: []string{"fd00::1|u|fd00::1|0"}},
		{entry: "node[01-03]", want: []string{"node01||node01|0", "node02||node02|0", "node03||node03|0"}},
		{entry: "n[8-10]:23", want: []string{"n8:23||n8|23", "n9:23||n9|23", "n10:23||n10|23"}},
		{entry: "10.0.0.[1,3-4]", want: []string{"10.0.0.1||10.0.0.1|0", "10.0.0.3||10.0.0.3|0", "10.0.0.4||10.0.0.4|0"}},
		{entry: "r[1-2]n[1-2]", want: []string{"r1n1||r1n1|0", "r1n2||r1n2|0", "r2n1||r2n1|0", "r2n2||r2n2|0"}},
		{entry: "node[3-1]", err: "a <= b"},
		{entry: "node[1-2", err: "without ']'"},
		{entry: "node:99999", err: "1 to 65535"},
		{entry: "a b", err: "space"},
		{entry: "@host", err: "user@host"},
		{entry: "[fd00::zz]:22", err: "not an IPv6"},
		{entry: "n[1-100000]", err: "more than"},
		{entry: "", err: "empty"},
	} {
		specs, err := parseHostEntry(tc.entry)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want containing %q", tc.entry, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.entry, err)
			continue
		}
		var got []string
		for _, s := range specs {
			got = append(got, strings.Join([]string{s.name, s.user, s.addr, strconv.Itoa(s.port)}, "|"))
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: got %v, want %v", tc.entry, got, tc.want)
		}
	}
}

func TestSetupScript(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ok.sh", "echo hi\n")
	writeFile(t, dir, "big.sh", strings.Repeat("#", MaxSetupScriptBytes+1))
	base := "hosts = [\"a\"]\n[container]\nimage = \"i\"\nsetup_script = "
	cfg, err := LoadWith(writeFile(t, dir, "c1.toml", base+`"ok.sh"`), LoadOptions{SSHConfig: "none", CurrentUser: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Container.SetupScript != filepath.Join(dir, "ok.sh") {
		t.Errorf("relative setup_script resolved to %q", cfg.Container.SetupScript)
	}
	_, err = LoadWith(writeFile(t, dir, "c2.toml", base+`"big.sh"`), LoadOptions{SSHConfig: "none", CurrentUser: "a"})
	if got := problems(t, err); len(got) != 1 || !strings.Contains(got[0], "16385 bytes, over the 16384-byte") || !strings.Contains(got[0], "c2.toml:4:") {
		t.Errorf("oversized script: %q", got)
	}
	_, err = LoadWith(writeFile(t, dir, "c3.toml", base+`"missing.sh"`), LoadOptions{SSHConfig: "none", CurrentUser: "a"})
	if got := problems(t, err); len(got) != 1 || !strings.Contains(got[0], "does not exist") {
		t.Errorf("missing script: %q", got)
	}
	cfg, err = LoadWith(writeFile(t, dir, "c4.toml", base+`""`), LoadOptions{SSHConfig: "none", CurrentUser: "a"})
	if err != nil || cfg.Container.SetupScript != "" {
		t.Errorf("empty setup_script must mean the packaged default: %v %q", err, cfg.Container.SetupScript)
	}
}

func TestSSHConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	sshCfg := writeFile(t, dir, "ssh_config", `
Host alias1
  HostName 192.0.2.10
  User sshuser
  Port 2200
  IdentityFile ~/.ssh/special
  ProxyJump jump@bastion:22
Host *
  User fallback
`)
	opts := LoadOptions{SSHConfig: sshCfg, CurrentUser: "alice", Home: "/home/alice"}
	cfg, err := LoadWith(writeFile(t, dir, "a.toml", "hosts = [\"alias1\", \"other\", \"pinned@alias1:2300\"]\n[container]\nimage = \"x:1\"\n"), opts)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Hosts[0]
	if h.Addr != "192.0.2.10" || h.User != "sshuser" || h.Port != 2200 || h.ProxyJump != "jump@bastion:22" ||
		len(h.IdentityFiles) != 1 || h.IdentityFiles[0] != "/home/alice/.ssh/special" {
		t.Errorf("ssh_config not honoured: %+v", h)
	}
	if h := cfg.Hosts[1]; h.User != "fallback" || h.Port != 22 || h.Addr != "other" {
		t.Errorf("Host * not honoured: %+v", h)
	}
	if h := cfg.Hosts[2]; h.User != "pinned" || h.Port != 2300 || h.Addr != "192.0.2.10" {
		t.Errorf("entry must pin user and port: %+v", h)
	}
	// Keys written in the cluster file win over ~/.ssh/config.
	cfg, err = LoadWith(writeFile(t, dir, "b.toml", `user = "filer"
port = 2022
identity_file = "k"
proxy_jump = "bastion2"
hosts = ["alias1"]
[container]
image = "x:1"`), opts)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Hosts[0]; h.User != "filer" || h.Port != 2022 || h.IdentityFiles[0] != filepath.Join(dir, "k") || h.ProxyJump != "bastion2" {
		t.Errorf("cluster file must win: %+v", h)
	}
}

func TestHeadAndDuplicates(t *testing.T) {
	cfg, err := load(t, `hosts = ["n[1-3]"]
head = "n2"`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Head().Name != "n2" {
		t.Errorf("head = %s", cfg.Head().Name)
	}
	_, err = load(t, `hosts = ["n[1-3]", "n2"]
head = "n9"`)
	all := strings.Join(problems(t, err), "\n")
	if !strings.Contains(all, "n2 appears twice") || !strings.Contains(all, `"n9" is not one of the hosts`) {
		t.Errorf("got:\n%s", all)
	}
}

func TestContainerChecks(t *testing.T) {
	_, err := load(t, `hosts = ["a"]
[container]
lifetime = "external"
image = "bad image"
name = "-x"
pull_timeout = "soon"
sshd_port = 70000
ulimits = ["nofile"]
[container.env]
"1BAD" = "x"
SMUGGLE = "a\nLD_PRELOAD=/x"
`)
	all := strings.Join(problems(t, err), "\n")
	for _, w := range []string{`"external" is called "no_launch"`, `"bad image" is not an image reference`,
		`"-x" is not a valid container name`, `"soon" is not a positive duration`, `70000 is out of range`,
		`"nofile" is not NAME=SOFT[:HARD]`, `"1BAD" is not a valid environment variable name`,
		`container.env.SMUGGLE: must be a single line`} {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
}

func TestLocateKeys(t *testing.T) {
	lines := locateKeys(`a = 1
b = """
x = not a key
"""
[t]
"quoted.key" = 2
c.d = 3
[[s.steps]]
n = 1
[[s.steps]]
n = 2
[s.steps.env]
E = "x"
`)
	for path, want := range map[string]int{"a": 1, "b": 2, "t.quoted.key": 6, "t.c.d": 7, "s.steps.0.n": 9, "s.steps.1.n": 11, "s.steps.1.env.E": 13} {
		if got := lines.line(path); got != want {
			t.Errorf("line(%s) = %d, want %d", path, got, want)
		}
	}
	if _, ok := lines["x"]; ok {
		t.Error("a line inside a multi-line string was taken for a key")
	}
}

func TestStepUser(t *testing.T) {
	cfg, err := load(t, `hosts = ["a"]
[suites.s]
user = "app"
[[suites.s.steps]]
name = "one"
run = "id"
[[suites.s.steps]]
name = "two"
run = "id"
user = "0:0"
`)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := cfg.Suite("s")
	if st.Steps[0].User != "app" || st.Steps[1].User != "0:0" {
		t.Errorf("users %q %q", st.Steps[0].User, st.Steps[1].User)
	}
	_, err = load(t, `hosts = ["a"]
[suites.s]
[[suites.s.steps]]
name = "one"
run = "id"
user = "root; rm -rf /"
`)
	all := strings.Join(problems(t, err), "\n")
	if !strings.Contains(all, ":6: ") || !strings.Contains(all, "is not a user for docker exec -u") {
		t.Errorf("got:\n%s", all)
	}
}

// Issue 9 item 13: a lifetime that launches needs an image, also when the
// whole [container] table is missing.
func TestNoContainerTableIsAnError(t *testing.T) {
	_, err := loadRaw(t, `hosts = ["a"]`)
	all := strings.Join(problems(t, err), "\n")
	if !strings.Contains(all, "[container]") || !strings.Contains(all, "image") {
		t.Errorf("got:\n%s", all)
	}
}

// Issue 9 item 14: image references are checked at load, with the line.
func TestImageReferenceSyntax(t *testing.T) {
	for _, bad := range []string{"<changeme>", "Upper/case:1", "x:tag:tag", "x@sha256:abc", "-x"} {
		_, err := load(t, "hosts = [\"a\"]\n[container]\nimage = \""+bad+"\"\n")
		all := strings.Join(problems(t, err), "\n")
		if !strings.Contains(all, ":3: container.image") || !strings.Contains(all, "not an image reference") {
			t.Errorf("%s: got:\n%s", bad, all)
		}
	}
	for _, good := range []string{"ubuntu", "lab-work:1", "172.29.0.1:5000/cvs-lab/workload:1", "[fd00::1]:5000/x:1",
		"reg:5000/a/b@sha256:" + strings.Repeat("ab", 32)} {
		if _, err := load(t, "hosts = [\"a\"]\n[container]\nimage = \""+good+"\"\n"); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}

// Issue 9 item 13: what validate prints (the effective configuration)
// loads again, to the same configuration, for the example and every
// lifetime.
func TestEffectiveRoundTrip(t *testing.T) {
	example, err := os.ReadFile("../examples/cluster.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"example":    string(example),
		"per_run":    "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\n",
		"persistent": "hosts = [\"a\"]\n[container]\nlifetime = \"persistent\"\nimage = \"x:1\"\nname = \"pp\"\n",
		"no_launch":  "hosts = [\"a\"]\n[container]\nlifetime = \"no_launch\"\nname = \"theirs\"\n",
	} {
		cfg, err := load(t, text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(cfg.Effective()); err != nil {
			t.Fatal(err)
		}
		again, err := load(t, b.String())
		if err != nil {
			t.Errorf("%s: the effective configuration does not load:\n%v\n%s", name, err, b.String())
			continue
		}
		var b2 strings.Builder
		toml.NewEncoder(&b2).Encode(again.Effective())
		if b.String() != b2.String() {
			t.Errorf("%s: round trip changed the configuration:\n%s\n---\n%s", name, b.String(), b2.String())
		}
	}
}

func TestSetupScriptNoneLoads(t *testing.T) {
	cfg, err := load(t, "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\nsetup_script = \"none\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Container.SetupScript != SetupNone || cfg.Effective().Container.SetupScript != "none" {
		t.Errorf("setup_script = %q", cfg.Container.SetupScript)
	}
}

// Issue 9 item 10: each bastion of a chain takes its own ssh_config entry,
// not the target host's user and keys.
func TestProxyJumpChainResolved(t *testing.T) {
	dir := t.TempDir()
	sshCfg := writeFile(t, dir, "ssh_config", `
Host bastion
  HostName 192.0.2.1
  User jumper
  Port 2201
  IdentityFile ~/.ssh/jumpkey
Host *
  User everyone
`)
	opts := LoadOptions{SSHConfig: sshCfg, CurrentUser: "alice", Home: "/home/alice"}
	cfg, err := LoadWith(writeFile(t, dir, "c.toml", `user = "root"
identity_file = "~/.ssh/cluster"
proxy_jump = "bastion,ops@[fd00::2]:2222,plain"
hosts = ["n1"]
[container]
image = "x:1"
`), opts)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Hosts[0].Jumps
	if len(j) != 3 {
		t.Fatalf("jumps = %+v", j)
	}
	if j[0].String() != "jumper@192.0.2.1:2201" || len(j[0].IdentityFiles) != 1 || j[0].IdentityFiles[0] != "/home/alice/.ssh/jumpkey" {
		t.Errorf("first bastion = %+v", j[0])
	}
	if j[1].String() != "ops@[fd00::2]:2222" || j[1].IdentityFiles[0] != "/home/alice/.ssh/cluster" {
		t.Errorf("second bastion = %+v", j[1])
	}
	if j[2].String() != "everyone@plain:22" {
		t.Errorf("third bastion = %+v", j[2])
	}
	if cfg.Hosts[0].User != "root" {
		t.Errorf("the target's user changed: %s", cfg.Hosts[0].User)
	}
	_, err = LoadWith(writeFile(t, dir, "d.toml", "proxy_jump = \"a,,b\"\nhosts = [\"n1\"]\n[container]\nimage = \"x:1\"\n"), opts)
	if err == nil || !strings.Contains(err.Error(), "empty bastion") {
		t.Errorf("empty bastion: %v", err)
	}
}

// FuzzLoad: whatever the file holds, the loader answers a configuration or
// a *LoadError, never panics, and a configuration it accepts prints as one
// it accepts again.
func FuzzLoad(f *testing.F) {
	example, _ := os.ReadFile("../examples/cluster.toml")
	f.Add(string(example))
	f.Add("hosts = [\"a\"]\n[container]\nimage = \"x:1\"\n")
	f.Add("hosts = [\"n[01-04]\", \"u@h:22\"]\n[container]\nlifetime = \"persistent\"\nname = \"pp\"\nimage = \"r:5000/a/b:1\"\n")
	f.Add("hosts = \"a\"\n[container\n")
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice"})
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("not a *LoadError: %v", err)
			}
			return
		}
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(cfg.Effective()); err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(dir, "again.toml")
		os.WriteFile(q, []byte(b.String()), 0o600)
		if _, err := LoadWith(q, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice"}); err != nil {
			t.Fatalf("the effective configuration does not load:\n%v\n%s", err, b.String())
		}
	})
}

// FuzzExpandHostList: host lists and ranges never panic and never expand
// past the limit.
func FuzzExpandHostList(f *testing.F) {
	for _, s := range []string{"node[01-04]", "a,b,c", "gpu[1-2,7],x", "n[1-1000000]", "[fd00::1]:22", "a[", "n[9-1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ExpandHostList(s)
		if err != nil {
			return
		}
		if len(names) > maxExpansion {
			t.Fatalf("%q expanded to %d hosts, over the limit", s, len(names))
		}
		for _, n := range names {
			if n == "" {
				t.Fatalf("%q expanded to an empty host name", s)
			}
		}
	})
}

// hosts = "slurm": the allocation's nodes, in Slurm's hostlist syntax; a
// clear error outside an allocation.
func TestHostsFromSlurm(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.toml", "hosts = \"slurm\"\n[container]\nimage = \"x:1\"\n")
	env := map[string]string{"SLURM_JOB_NODELIST": "node[01-03,07],gpu[1-2]"}
	cfg, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice", Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range cfg.Hosts {
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "node01 node02 node03 node07 gpu1 gpu2" {
		t.Errorf("hosts = %v", names)
	}
	_, err = LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice", Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "SLURM_JOB_NODELIST is not set") || !strings.Contains(err.Error(), "c.toml:1") {
		t.Errorf("outside an allocation: %v", err)
	}
}

// Issue 21 item 1: pin_ttl = "0s" is accepted (no cached digest stands in
// for an unreachable registry); a negative one is not.
func TestPinTTLZero(t *testing.T) {
	cfg, err := load(t, "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\npin_ttl = \"0s\"\n")
	if err != nil || cfg.Container.PinTTL != 0 {
		t.Fatalf("pin_ttl 0s: %v", err)
	}
	_, err = load(t, "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\npin_ttl = \"-1s\"\n")
	if err == nil || !strings.Contains(err.Error(), "pin_ttl") {
		t.Errorf("pin_ttl -1s: %v", err)
	}
}

// Issue 21 item 2: [container] platform forces one platform of a
// multi-platform image; it must be os/arch[/variant].
func TestPlatformKey(t *testing.T) {
	cfg, err := load(t, "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\nplatform = \"linux/arm64\"\n")
	if err != nil || cfg.Container.Platform != "linux/arm64" {
		t.Fatalf("platform: %v", err)
	}
	if e := cfg.Effective(); e.Container.Platform != "linux/arm64" {
		t.Errorf("effective: %+v", e.Container)
	}
	_, err = load(t, "hosts = [\"a\"]\n[container]\nimage = \"x:1\"\nplatform = \"arm64\"\n")
	if err == nil || !strings.Contains(err.Error(), `container.platform: "arm64" is not os/arch`) {
		t.Errorf("platform arm64: %v", err)
	}
}
