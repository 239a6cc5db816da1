//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Issue 10 on real hosts: host1's local copy of the tag names another
// image. Before, every host launched and the image check rolled them all
// back (exit 4); now the run is refused before any change (exit 5), with
// the host → image ID table.
func TestSkewedLocalTagRefusedBeforeAnyChange(t *testing.T) {
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
	if err := <-repushed; err != nil {
		t.Fatalf("re-pushing the tag: %v", err)
	}
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
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
