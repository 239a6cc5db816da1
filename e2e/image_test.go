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
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
	out, errOut, code := runCVS(t, "--cluster", file, "run", "s")
	if code != 5 || !strings.Contains(out+errOut, "image skew before launch") {
		t.Fatalf("exit %d, want 5 before any change:\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "launching") {
		t.Errorf("something was launched:\n%s", errOut)
	}
	assertNoneLeft(t, name, "after the refusal")
}
