package session

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/transport"
)

// stageBoundaries names the first command of each stage of a cold start,
// as a host receives it: an interrupt there lands at the boundary.
var stageBoundaries = []struct {
	stage string
	first func(argv []string) bool
}{
	{"probe", func(a []string) bool { return a[0] == "sh" }}, // the lock, the first contact
	{"launch", func(a []string) bool { return len(a) > 1 && a[1] == "run" }},
	{"provision", func(a []string) bool {
		return len(a) > 4 && a[1] == "exec" && a[4] == "0" && strings.Contains(strings.Join(a, " "), "exec 3<&0")
	}},
	{"sshd", func(a []string) bool {
		return len(a) > 1 && a[1] == "exec" && strings.Contains(a[len(a)-1], "cvs-sshd.pid")
	}},
	{"image check", func(a []string) bool { return len(a) == 4 && a[1] == "container" && a[2] == "inspect" }},
	{"step", func(a []string) bool { return len(a) > 6 && a[1] == "exec" && a[5] == "mkdir" }},
	{"teardown", func(a []string) bool { return len(a) > 2 && a[1] == "ps" && a[2] == "-aq" }},
}

// Issue 11: SIGINT and SIGTERM at every stage boundary of a cold start.
// The exit code is 130 or 143; per_run leaves no container; persistent
// leaves every container either untouched (absent, as before) or fully
// set up (provisioned, recorded, sshd running); the run record has the
// exit code.
func TestInterruptAtEveryStageBoundary(t *testing.T) {
	for _, lt := range []cluster.Lifetime{cluster.LifetimePerRun, cluster.LifetimePersistent} {
		for _, b := range stageBoundaries {
			if b.stage == "teardown" && lt == cluster.LifetimePersistent {
				continue // a persistent run has no teardown
			}
			for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
				t.Run(string(lt)+"/"+b.stage+"/"+sig.String(), func(t *testing.T) {
					r := newRig(t, 2, lt)
					ctx, cancel := context.WithCancelCause(context.Background())
					defer cancel(nil)
					var once sync.Once
					hit := false
					for _, h := range r.hosts {
						h.OnCommand = func(argv []string) {
							if b.first(argv) {
								once.Do(func() { hit = true; cancel(exitcode.Signalled(sig)) })
							}
						}
					}
					_, err := Run(ctx, r.cfg, r.suite(t, "install"), false, r.opts)
					if !hit {
						t.Fatalf("the run never reached the %s stage", b.stage)
					}
					want := 128 + int(sig)
					if got := ExitCode(ctx, err); got != want {
						t.Errorf("exit %d, want %d: %v", got, want, err)
					}
					for _, h := range r.hosts {
						c, ok := h.Container("cvs-t")
						switch {
						case !ok:
						case lt == cluster.LifetimePerRun:
							t.Errorf("%s: per_run container left", h.Name)
						case c.State != "running" || c.Record == "" || !c.SSHD:
							t.Errorf("%s: persistent container left half set up: state %s, record %q, sshd %v", h.Name, c.State, c.Record, c.SSHD)
						}
					}
					rec, ferr := FindRun("")
					if ferr != nil || rec.ExitCode != want {
						t.Errorf("run record: exit %d, %v", rec.ExitCode, ferr)
					}
				})
			}
		}
	}
}

func TestSignalledCause(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(exitcode.Signalled(syscall.SIGTERM))
	if got := ExitCode(ctx, context.Canceled); got != exitcode.Terminated {
		t.Errorf("SIGTERM: exit %d", got)
	}
	if got := ExitCode(ctx, exitcode.With(exitcode.Refused, errors.New("x"))); got != exitcode.Refused {
		t.Errorf("a refusal under SIGTERM: exit %d", got)
	}
}

// A failed docker command's stderr is in its error once, not twice (the
// exit error carries the stderr tail; the stage's failure must not add it
// again). Seen on the lab: a pull that filled the disk printed every line
// twice.
func TestFailureOutputNotDoubled(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	r.hosts[1].FailRun = "docker: write /var/lib/docker/tmp/GetImageBlob1: no space left on device."
	_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
	if err == nil || strings.Count(err.Error(), "no space left on device") != 1 {
		t.Fatalf("the failure should name the cause once:\n%v", err)
	}
}

// Issue 20 item 12: what a second Ctrl-C leaves includes the temporary
// folders on the hosts (a cvs-env one holds [container.env] values), each
// named with the hosts holding it.
func TestLeftBehindNamesTempFolders(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePerRun)
	r.cfg.Container.Env = map[string]string{"API_KEY": "k3y"}
	var arrived sync.WaitGroup
	arrived.Add(len(r.hosts))
	var once sync.Once
	var left string
	r.opts.OnOpen = func(s *Session) {
		for _, h := range r.hosts {
			h.OnCommand = func(argv []string) {
				if len(argv) > 1 && argv[0] == "docker" && argv[1] == "run" {
					// Every host holds its folder while docker run runs.
					arrived.Done()
					arrived.Wait()
					once.Do(func() { left = s.LeftBehind() })
				}
			}
		}
	}
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	dir := "/tmp/" + transport.TempDirName("cvs-env", []byte("API_KEY=k3y\n"))
	if !strings.Contains(left, dir+" on 10.9.0.[1-3]") {
		t.Errorf("LeftBehind during docker run = %q, want it to name %s on every host", left, dir)
	}
	for _, d := range transport.TempDirsLeft() {
		if strings.HasPrefix(d.Hosts[0], "10.9.0.") {
			t.Errorf("after the run, %s is still counted on %v", d.Dir, d.Hosts)
		}
	}
	if strings.Contains(left, "k3y") {
		t.Errorf("LeftBehind shows a [container.env] value: %q", left)
	}
}

// Issue 20 item 12: the next run that holds the cluster lock removes, in
// its probe (no extra round trip), the temporary folders an earlier cvs
// left on a host once they have been untouched for StaleTempAge; a fresh
// one may be another cvs's (another container's run) and stays. cvs
// status changes nothing, leftovers included.
func TestNextRunRemovesStaleTempFolders(t *testing.T) {
	r := newRig(t, 2, cluster.LifetimePerRun)
	stale, fresh := "/tmp/cvs-env.0123456789abcdef", "/tmp/cvs-stdin.fedcba9876543210"
	r.hosts[1].AddTempDir(stale, time.Now().Add(-transport.StaleTempAge-time.Minute))
	r.hosts[1].AddTempDir(fresh, time.Now().Add(-transport.StaleTempAge+5*time.Minute))
	if _, err := Status(context.Background(), r.cfg, r.opts); err != nil {
		t.Fatal(err)
	}
	if got := r.hosts[1].TempDirs(); len(got) != 2 {
		t.Fatalf("status changed the temporary folders: %v", got)
	}
	var logs strings.Builder
	r.opts.Log = log.New(&logs)
	if _, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts); err != nil {
		t.Fatal(err)
	}
	if got := r.hosts[1].TempDirs(); len(got) != 1 || got[0] != fresh {
		t.Errorf("after the run: %v, want only %s", got, fresh)
	}
	if !regexp.MustCompile(`removed .*host=10\.9\.0\.2.*` + regexp.QuoteMeta(stale)).MatchString(logs.String()) {
		t.Errorf("the log does not say what was removed where:\n%s", logs.String())
	}
	for _, l := range r.hosts[1].Lines() {
		if strings.Contains(l, "rm -rf") && strings.Contains(l, stale) && !strings.Contains(l, "@@cvs-probe@@") {
			t.Errorf("the stale folder cost a command of its own: %s", l)
		}
	}
}
