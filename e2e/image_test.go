//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// Issue 10 on real hosts: host1's local copy of the tag names another
// image. Before, every host launched and the image check rolled them all
// back (exit 4); now the run is refused before any change (exit 5), with
// the host → image ID table.
func TestSkewedLocalTagRefusedBeforeAnyChange(t *testing.T) {
	runsIn(t, apiPass|cliPass)
	const name = "e2e-tagskew"
	useContainer(t, name)
	l := Lab(t)
	ref := l.WorkloadImage()
	ctx := testCtx(t, 3*time.Minute)
	for _, h := range hostNames(t) {
		if _, err := l.HostDocker(ctx, h, "pull", "--quiet", ref); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Retag(ctx, "host1", ref, l.WorkloadImage2()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) { l.HostDocker(ctx, "host1", "pull", "--quiet", ref) })
	})
	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"
	// Pinned to a digest, the hosts would all pull the registry's content
	// and agree; the refusal is for runs that launch the tag.
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Pin: "off", Suites: suites})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "s")
	if code != 5 || !strings.Contains(out+errOut, "image skew before launch") {
		t.Fatalf("exit %d, want 5 before any change:\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "launching") {
		t.Errorf("something was launched:\n%s", errOut)
	}
	assertNoneLeft(t, name, "after the refusal")
}

// Issue 10 on real hosts: the tag is re-pushed in the lab registry while a
// run launches host after host. Pinned to the digest resolved at the start,
// every host runs the same image (before: the later hosts pulled the new
// content, the image check failed and everything was rolled back).
func TestPinnedTagRepushedMidRun(t *testing.T) {
	runsIn(t, apiPass|cliPass)
	const name = "e2e-pinned"
	useContainer(t, name)
	l := Lab(t)
	ctx := testCtx(t, 5*time.Minute)
	moving := l.Registry() + "/cvs-e2e/moving:1"
	// host1 publishes workload:1 as the moving tag; hosts 2 and 3 start
	// without any image, so their pulls take a while.
	for _, argv := range [][]string{
		{"pull", "--quiet", l.WorkloadImage()}, {"pull", "--quiet", l.WorkloadImage2()},
		{"tag", l.WorkloadImage(), moving}, {"push", moving},
	} {
		if res, err := l.HostDocker(ctx, "host1", argv...); err != nil {
			t.Fatalf("docker %s: %v %s", strings.Join(argv, " "), err, res.Stderr)
		}
	}
	first, _ := l.ImageID(ctx, "host1", l.WorkloadImage())
	for _, h := range []string{"host2", "host3"} {
		l.HostExec(ctx, h, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; docker rmi --force $(docker images -q) 2>/dev/null; true")
	}
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) { l.HostDocker(ctx, "host1", "rmi", "-f", moving) })
	})

	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Image: moving, MaxParallel: 1, Suites: suites + `
[suites.hold]
[[suites.hold.steps]]
name = "wait"
run = "sleep 1"
`})
	// As soon as host1's container exists, the tag moves to workload:2.
	repushed := make(chan error, 1)
	go func() {
		for {
			if _, ok := inspect(t, "host1", name); ok {
				break
			}
			select {
			case <-ctx.Done():
				repushed <- ctx.Err()
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		_, err := l.HostDocker(ctx, "host1", "tag", l.WorkloadImage2(), moving)
		if err == nil {
			_, err = l.HostDocker(ctx, "host1", "push", moving)
		}
		repushed <- err
	}()
	out, errOut, code := runCVS(t, "--cluster", file, "--json", "run", "hold")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut) // the re-push waits no more: testCtx ends
	}
	if err := <-repushed; err != nil {
		t.Fatalf("re-pushing the tag: %v", err)
	}
	if !strings.Contains(errOut, "image pinned") || !strings.Contains(out, `"digest": "sha256:`) {
		t.Errorf("no pin in the run:\n%s\n%s", out, errOut)
	}
	// The run passed its image check: every host ran the first content.
	// The next resolution (cache dropped) sees the new digest.
	rec := out
	if !strings.Contains(rec, "cvs-e2e/moving@sha256:") {
		t.Errorf("the hosts were not told to launch by digest:\n%s", rec)
	}
	if id, _ := l.ImageID(ctx, "host3", l.WorkloadImage2()); id == first {
		t.Error("workload:1 and :2 are the same image; the test proves nothing")
	}
}

// Issue 10, site rewrites on real hosts: the cluster file names a registry
// the lab cannot reach; --site lab rewrites the image to the lab registry
// (in memory), and the hosts run it.
func TestSiteRewriteOnTheLab(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-site"
	useContainer(t, name)
	l := Lab(t)
	suites := `
[suites.s]
[[suites.s.steps]]
name = "marker"
run = "cat /etc/cvs-lab-workload"

[sites.lab]
[[sites.lab.image.rewrite]]
match = 're:registry\.example:5000/(.*)'
replace = "` + l.Registry() + `/$1"
`
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Image: "registry.example:5000/cvs-lab/workload:1", Suites: suites})
	out, errOut, code := runCVS(t, "--cluster", file, "--site", "lab", "run", "s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "registry.example:5000/cvs-lab/workload:1 → "+l.WorkloadImage()+" (site lab)") {
		t.Errorf("the run does not show the rewrite:\n%s", out)
	}
	rec, _, _ := runCVS(t, "--json", "history", "show")
	if !strings.Contains(rec, `"site": "lab"`) || !strings.Contains(rec, `"effective_image": "`+l.WorkloadImage()+`"`) {
		t.Errorf("the record lacks the site and the effective image:\n%s", rec)
	}
}

// pushDoc is `cvs image push --json`.
type pushDoc struct {
	ImageID string `json:"image_id"`
	Pushes  []struct {
		Host    string `json:"host"`
		Skipped bool   `json:"skipped"`
		Layers  int    `json:"layers_sent"`
		Bytes   int64  `json:"bytes_sent"`
	} `json:"pushes"`
}

func pushJSON(t *testing.T, args ...string) pushDoc {
	t.Helper()
	out, errOut, code := runCVS(t, append([]string{"--json", "image", "push"}, args...)...)
	if code != 0 {
		t.Fatalf("image push: exit %d\n%s\n%s", code, out, errOut)
	}
	var d pushDoc
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("image push --json: %v\n%s", err, out)
	}
	return d
}

// Issue 10, registryless distribution on real hosts: the image is pushed
// over SSH, the hosts' registry access stopped; a second push sends
// nothing; a derived image (one small layer on the workload) sends only
// that layer; prune empties the cache.
func TestPushWithoutRegistry(t *testing.T) {
	runsIn(t, apiPass|cliPass|slurmPass)
	const name = "e2e-push"
	useContainer(t, name)
	l := Lab(t)
	ctx := testCtx(t, 10*time.Minute)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	// image ls lists the partial files of $TMPDIR too: only this test's.
	t.Setenv("TMPDIR", t.TempDir())
	t.Cleanup(func() { cleanupCtx(2*time.Minute, func(ctx context.Context) { l.StartRegistry(ctx) }) })
	derived := l.Registry() + "/cvs-e2e/derived:1"
	// The derived image, built once on host1 and published while the
	// registry is up.
	for _, argv := range [][]string{
		{"pull", "--quiet", l.WorkloadImage()}, {"rm", "-f", "e2e-derive"},
		{"run", "--name", "e2e-derive", l.WorkloadImage(), "sh", "-c", "echo derived > /etc/cvs-e2e-derived"},
		{"commit", "e2e-derive", derived}, {"rm", "-f", "e2e-derive"}, {"push", derived}, {"rmi", "-f", derived},
	} {
		if res, err := l.HostDocker(ctx, "host1", argv...); err != nil {
			t.Fatalf("docker %s: %v %s", strings.Join(argv, " "), err, res.Stderr)
		}
	}
	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"marker\"\nrun = \"cat /etc/cvs-lab-workload\"\n"
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites + "\n"})
	text, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(text), "[container]\n", "[container]\ndistribute = \"push\"\n", 1)), 0o600)

	// Fill this machine's cache while the registry answers, then take it
	// away and empty the hosts.
	if out, errOut, code := runCVS(t, "--cluster", file, "image", "push"); code != 0 {
		t.Fatalf("first push: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, h := range hostNames(t) {
		l.HostExec(ctx, h, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; docker rmi --force $(docker images -q) 2>/dev/null; true")
	}
	if err := l.StopRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCVS(t, "--cluster", file, "run", "s")
	if code != 0 || strings.Count(out, "marker") == 0 || strings.Count(errOut, "image pushed") != labHosts {
		t.Fatalf("run with the registry stopped: exit %d\n%s\n%s", code, out, errOut)
	}
	full := pushJSON(t, "--cluster", file)
	for _, p := range full.Pushes {
		if !p.Skipped || p.Bytes != 0 {
			t.Errorf("second push sent to %s: %+v", p.Host, p)
		}
	}
	if err := l.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	d := pushJSON(t, "--cluster", file, derived)
	for _, p := range d.Pushes {
		if p.Skipped || p.Layers != 1 || p.Bytes > 1<<20 {
			t.Errorf("derived image to %s: %+v (want 1 small layer)", p.Host, p)
		}
		res, err := l.HostDocker(ctx, p.Host, "image", "inspect", "--format", "{{.Id}}", derived)
		if err != nil || strings.TrimSpace(res.Stdout) != d.ImageID {
			t.Errorf("%s: loaded %q, want %s (%v)", p.Host, res.Stdout, d.ImageID, err)
		}
	}
	t.Cleanup(func() {
		cleanupCtx(time.Minute, func(ctx context.Context) {
			for _, h := range hostNames(t) {
				l.HostDocker(ctx, h, "rmi", "-f", derived)
			}
		})
	})
	out, _, code = runCVS(t, "--cluster", file, "image", "prune", "--keep", "0")
	if code != 0 || !strings.Contains(out, "2 image(s) removed") {
		t.Errorf("prune: exit %d\n%s", code, out)
	}
	if out, _, _ := runCVS(t, "--cluster", file, "--json", "image", "ls"); strings.TrimSpace(out) != "[]" {
		t.Errorf("cache after prune: %s", out)
	}
}

// Issue 21 item 1 on real hosts: the tag is re-pushed in the lab registry
// between two runs; the second run (the digest cache still holding the
// first digest) resolves the new digest at once and warns naming both.
func TestRePushSeenByTheNextRun(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-repush"
	useContainer(t, name)
	l := Lab(t)
	ctx := testCtx(t, 5*time.Minute)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	moving := l.Registry() + "/cvs-e2e/repushed:1"
	publish := func(src string) {
		for _, argv := range [][]string{{"pull", "--quiet", src}, {"tag", src, moving}, {"push", moving}} {
			if res, err := l.HostDocker(ctx, "host1", argv...); err != nil {
				t.Fatalf("docker %s: %v %s", strings.Join(argv, " "), err, res.Stderr)
			}
		}
	}
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) { l.HostDocker(ctx, "host1", "rmi", "-f", moving) })
	})
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Image: moving,
		Suites: "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"})
	digestOf := func(out string) string {
		var doc struct {
			Digest string `json:"digest"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Digest == "" {
			t.Fatalf("no digest in the run's JSON (%v):\n%s", err, out)
		}
		return doc.Digest
	}

	publish(l.WorkloadImage())
	out, errOut, code := runCVS(t, "--cluster", file, "--json", "run", "s")
	if code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, errOut)
	}
	first := digestOf(out)
	publish(l.WorkloadImage2())
	out, errOut, code = runCVS(t, "--cluster", file, "--json", "run", "s")
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, errOut)
	}
	second := digestOf(out)
	if second == first {
		t.Fatalf("the second run used the first digest %s: the re-push went unnoticed\n%s", first, errOut)
	}
	if !strings.Contains(errOut, "re-pushed") || !strings.Contains(errOut, first) || !strings.Contains(errOut, second) {
		t.Errorf("no warning naming both digests:\n%s", errOut)
	}
}
