package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Issue 21 item 11: an env value may come from the controller's
// environment or a file; those values, and literal values of keys whose
// name looks secret, are the run's secrets.
func TestEnvValueSources(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("file-secret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "pw"), []byte("home-secret-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, "cluster.toml", `hosts = ["a"]
[env]
PLAIN = "visible"
FROM_ENV = { env = "CVS_TEST_TOKEN" }
API_KEY = "literal-key-3"
MONKEY = "banana"
[container]
image = "x:1"
[container.env]
FROM_FILE = { file = "token" }
DB_PASSWORD = "pw"
[suites.s]
[[suites.s.steps]]
name = "one"
run = "true"
env = { HOME_FILE = { file = "~/pw" } }
`)
	env := map[string]string{"CVS_TEST_TOKEN": "env-secret-0"}
	cfg, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: home, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Env["FROM_ENV"] != "env-secret-0" || cfg.Env["PLAIN"] != "visible" {
		t.Errorf("[env] = %v", cfg.Env)
	}
	if cfg.Container.Env["FROM_FILE"] != "file-secret-1" {
		t.Errorf("[container.env] FROM_FILE = %q, want the file without its trailing newline", cfg.Container.Env["FROM_FILE"])
	}
	if got := cfg.Suites[0].Steps[0].Env["HOME_FILE"]; got != "home-secret-2" {
		t.Errorf("step env HOME_FILE = %q", got)
	}
	got := slices.Clone(cfg.Secrets)
	slices.Sort(got)
	want := []string{"env-secret-0", "file-secret-1", "home-secret-2", "literal-key-3", "pw"}
	if !slices.Equal(got, want) {
		t.Errorf("secrets = %q, want %q", got, want)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings for 0600 files: %q", cfg.Warnings)
	}

	// validate --show-secrets never prints a value from the environment
	// or a file: it names where the value comes from.
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(cfg.Effective()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"env-secret-0", "file-secret-1", "home-secret-2"} {
		if strings.Contains(b.String(), s) {
			t.Errorf("the effective configuration shows %q:\n%s", s, b.String())
		}
	}
	for _, s := range []string{"from $CVS_TEST_TOKEN", "from file " + filepath.Join(dir, "token"), "visible"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("the effective configuration does not show %q:\n%s", s, b.String())
		}
	}
	if cfg.Env["FROM_ENV"] != "env-secret-0" {
		t.Error("Effective changed the configuration's own map")
	}
}

func TestEnvValueSourceProblems(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "open"), []byte("s3cret-open"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "two"), []byte("a\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, "cluster.toml", `hosts = ["a"]
[env]
MISSING = { env = "CVS_TEST_UNSET" }
NOFILE = { file = "nope" }
BOTH = { env = "X", file = "y" }
OTHER = { vault = "x" }
MULTI = { file = "two" }
NUM = { env = 3 }
OPEN = { file = "open" }
[container]
image = "x:1"
`)
	cfg, err := LoadWith(p, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice", Getenv: func(string) string { return "" }})
	all := strings.Join(problems(t, err), "\n")
	for _, w := range []string{
		p + `:3: env.MISSING: the environment variable CVS_TEST_UNSET is not set`,
		p + `:4: env.NOFILE: ` + filepath.Join(dir, "nope") + `: no such file`,
		p + `:5: env.BOTH: write either { env = "NAME" } or { file = "path" }`,
		p + `:6: env.OTHER: write either { env = "NAME" } or { file = "path" }`,
		p + `:7: env.MULTI: ` + filepath.Join(dir, "two") + ` must hold a single line`,
		p + `:8: env.NUM: env must be a string`,
	} {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
	if strings.Contains(all, "OPEN") || strings.Contains(all, "s3cret") {
		t.Errorf("a readable file is a problem, or a value is shown:\n%s", all)
	}
	_ = cfg

	p2 := writeFile(t, dir, "ok.toml", "hosts = [\"a\"]\n[env]\nOPEN = { file = \"open\" }\n[container]\nimage = \"x:1\"\n")
	cfg, err = LoadWith(p2, LoadOptions{SSHConfig: "none", CurrentUser: "alice", Home: "/home/alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "env.OPEN") || !strings.Contains(cfg.Warnings[0], "chmod 600") || strings.Contains(cfg.Warnings[0], "s3cret") {
		t.Errorf("warnings = %q, want one for the group/world-readable file", cfg.Warnings)
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"API_KEY": true, "KEY": true, "aws_access_key_id": true, "DB_PASSWORD": true, "PASSWD": true,
		"GITHUB_TOKEN": true, "client_secret": true, "GOOGLE_APPLICATION_CREDENTIALS": true,
		"MONKEY": false, "KEYBOARD_LAYOUT": false, "PATH": false, "OMP_NUM_THREADS": false,
	} {
		if got := SecretName(name); got != want {
			t.Errorf("SecretName(%s) = %v, want %v", name, got, want)
		}
	}
}

// Issue 20 item 10: through Slurm, secrets would cross the cluster network
// in clear (srun's I/O is not encrypted). A Slurm cluster file with a
// secret value does not load, naming the key and what to do, unless
// [engine] cleartext_secrets = true accepts it.
func TestSlurmRefusesSecretsUnlessAccepted(t *testing.T) {
	base := `hosts = ["n1", "n2"]
[env]
PLAIN = "visible"
[container]
image = "x:1"
[container.env]
API_TOKEN = "s3cret-value"
[engine]
kind = "slurm"
`
	_, err := load(t, base)
	if err == nil || !strings.Contains(err.Error(), "container.env.API_TOKEN") || !strings.Contains(err.Error(), "cleartext_secrets = true") {
		t.Fatalf("a Slurm cluster file with a secret loaded: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret-value") || strings.Contains(err.Error(), "PLAIN") {
		t.Errorf("the refusal shows a value or a key that is not secret: %v", err)
	}
	cfg, err := load(t, base+"cleartext_secrets = true\n")
	if err != nil || !cfg.Engine.CleartextSecrets {
		t.Fatalf("accepted: %v", err)
	}
	if _, err := load(t, strings.Replace(base, `kind = "slurm"`, `kind = "ssh"`, 1)); err != nil {
		t.Errorf("over SSH the same file must load: %v", err)
	}
	if _, err := load(t, strings.Replace(base, "API_TOKEN", "SETTING", 1)); err != nil {
		t.Errorf("a Slurm file without secrets must load: %v", err)
	}
}
