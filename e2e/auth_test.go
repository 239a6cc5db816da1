//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// Issue 28: a registry that wants a login (the lab's second registry,
// htpasswd), the controller logged in through DOCKER_CONFIG and the hosts'
// SSH user through docker login. Pinned pulls through the Engine API (the
// host's login sent with the request) and through the docker CLI, push
// mode with hosts that have no login, a controller without credentials,
// a host without one. The password never shows in cvs's output, its
// record and logs, or the hosts' process lists while cvs runs.
func TestAuthenticatedRegistry(t *testing.T) {
	// The login reaches a pull differently through the API and the CLI.
	runsIn(t, apiPass|cliPass)
	sshOnly(t, "the login travels with Engine API requests over the SSH connection and the preflight asks each host's daemon; under Slurm the hosts' docker CLI pulls with their own login, as in the CLI pass")
	const name = "e2e-auth"
	useContainer(t, name)
	l := Lab(t)
	ctx := testCtx(t, 15*time.Minute)
	login, err := l.StartAuthRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hosts := hostNames(t)
	if err := l.LoginHosts(ctx, login, hosts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cleanupCtx(time.Minute, func(ctx context.Context) { l.LogoutHosts(ctx, login.Registry, hosts...) })
	})
	withCreds, without := t.TempDir(), t.TempDir()
	if err := lab.WriteDockerConfig(withCreds, login); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", withCreds)
	// This run's records, logs and image cache only, to search them all.
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())

	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"marker\"\nrun = \"cat /etc/cvs-lab-workload\"\n"
	cluster := func(pin string, push bool) string {
		file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Image: l.AuthWorkloadImage(), Pin: pin, Suites: suites})
		if push {
			text, _ := os.ReadFile(file)
			os.WriteFile(file, []byte(strings.Replace(string(text), "[container]\n", "[container]\ndistribute = \"push\"\n", 1)), 0o600)
		}
		return file
	}
	emptyHosts := func() {
		for _, h := range hosts {
			l.HostExec(ctx, h, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; docker rmi --force $(docker images -q) 2>/dev/null; true")
		}
	}
	// run runs cvs, watching the hosts' process lists for the password
	// while it runs.
	run := func(t *testing.T, args ...string) (string, string, int) {
		t.Helper()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var seen []string
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				for _, h := range hosts {
					res, _ := l.HostExec(ctx, h, "ps", "-eo", "args")
					if strings.Contains(res.Stdout, login.Password) {
						seen = append(seen, h)
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
		out, errOut, code := runCVS(t, args...)
		close(stop)
		wg.Wait()
		if len(seen) > 0 {
			t.Errorf("the password was in a command line on %v", seen)
		}
		if strings.Contains(out+errOut, login.Password) {
			t.Error("the password is in cvs's output")
		}
		return out, errOut, code
	}

	for _, access := range []string{"api", "cli"} {
		t.Run("pinned pull through "+access, func(t *testing.T) {
			t.Setenv("CVS_DOCKER_ACCESS", access)
			emptyHosts()
			file := cluster("required", false)
			want := "config"
			if access == "cli" {
				want = "docker CLI"
			}
			if out, _, _ := run(t, "--cluster", file, "status"); !strings.Contains(out, "registry login on ") || !strings.Contains(out, ": "+want) {
				t.Errorf("status does not say the hosts' pulls use %s:\n%s", want, out)
			}
			out, errOut, code := run(t, "--cluster", file, "run", "s")
			if code != 0 || strings.Count(out, "marker") == 0 || !strings.Contains(errOut, "image pinned") {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
		})
	}

	t.Run("push with hosts that have no login", func(t *testing.T) {
		emptyHosts()
		if err := l.LogoutHosts(ctx, login.Registry, hosts...); err != nil {
			t.Fatal(err)
		}
		defer l.LoginHosts(ctx, login, hosts...)
		out, errOut, code := run(t, "--cluster", cluster("required", true), "run", "s")
		if code != 0 || strings.Count(errOut, "image pushed") != labHosts {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
	})

	t.Run("controller without credentials", func(t *testing.T) {
		emptyHosts()
		t.Setenv("DOCKER_CONFIG", without)
		out, errOut, code := run(t, "--cluster", cluster("required", false), "run", "s")
		if code != 3 || !strings.Contains(errOut, "docker login "+login.Registry) || strings.Contains(errOut, "launching") {
			t.Fatalf("pin = required: exit %d, want 3 naming `docker login %s`, nothing launched\n%s\n%s", code, login.Registry, out, errOut)
		}
		assertNoneLeft(t, name, "after the refusal")
		// prefer: said, then the hosts pull the tag with their own login.
		out, errOut, code = run(t, "--cluster", cluster("prefer", false), "run", "s")
		if code != 0 || !strings.Contains(errOut, "WARN") || !strings.Contains(errOut, "docker login "+login.Registry) {
			t.Fatalf("pin = prefer: exit %d, want 0 after a warning naming `docker login %s`\n%s\n%s", code, login.Registry, out, errOut)
		}
	})

	for _, access := range []string{"api", "cli"} {
		t.Run("a host without a login through "+access, func(t *testing.T) {
			t.Setenv("CVS_DOCKER_ACCESS", access)
			emptyHosts()
			if err := l.LogoutHosts(ctx, login.Registry, "host3"); err != nil {
				t.Fatal(err)
			}
			defer l.LoginHosts(ctx, login, "host3")
			out, errOut, code := run(t, "--cluster", cluster("required", false), "run", "s")
			h3 := cvsHost(t, "host3")
			if code == 0 || !strings.Contains(errOut, h3) || !strings.Contains(errOut, "docker login "+login.Registry) {
				t.Fatalf("exit %d, want a failure naming %s and `docker login %s`\n%s\n%s", code, h3, login.Registry, out, errOut)
			}
			if strings.Contains(errOut, "launching") {
				t.Errorf("something was launched before host3's missing login was found:\n%s", errOut)
			}
			assertNoneLeft(t, name, "after the refusal")
		})
	}

	// Records, logs, reports: nothing under this test's state folder
	// holds the password.
	filepath.WalkDir(state, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), login.Password) {
				t.Errorf("%s holds the password", p)
			}
		}
		return nil
	})
	if out, _ := exec.Command("grep", "-rl", login.Password, state).Output(); len(out) > 0 {
		t.Errorf("grep found the password in: %s", out)
	}
}
