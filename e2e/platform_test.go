//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/report"
)

// withContainerKeys adds TOML lines to the [container] table of the
// cluster file at path.
func withContainerKeys(t *testing.T, path string, lines ...string) {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(path, []byte(strings.Replace(string(text), "[container]\n", "[container]\n"+keys, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 21 item 2 on real hosts, with an image index of two platforms in
// the lab registry (linux/amd64: the workload image; linux/arm64: a copy
// whose configuration says arm64): the (amd64) hosts pull and run the
// amd64 image; with pin = "off", platform = "linux/arm64" reaches the
// hosts' pull (they run the arm64 copy); with distribute = "push" the
// amd64 image is cached under the index digest and its platform, and the
// next push-mode run finds it there with the registry stopped.
func TestImageIndexOnTheLab(t *testing.T) {
	// The platform reaches the pull differently through the API and the CLI.
	runsIn(t, apiPass|cliPass)
	const name = "e2e-multi"
	useContainer(t, name)
	l := Lab(t)
	ctx := testCtx(t, 10*time.Minute)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("TMPDIR", t.TempDir())
	if err := l.StartRegistry(ctx); err != nil { // a test stopped before its cleanup may have left it stopped
		t.Fatal(err)
	}
	idx, err := l.PushPlatformIndex(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cleanupCtx(2*time.Minute, func(ctx context.Context) {
			l.StartRegistry(ctx)
			for _, h := range hostNames(t) {
				// The amd64 image is the workload image: only the arm64
				// copy and the index's names go.
				l.HostDocker(ctx, h, "rmi", "-f", idx.Ref, idx.ImageIDs["linux/arm64"])
			}
		})
	})
	suites := "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"
	runs := func(what, file, platform string) {
		t.Helper()
		out, errOut, code := runCVS(t, "--cluster", file, "run", "s")
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", what, code, out, errOut)
		}
		for _, h := range hostNames(t) {
			c, ok := inspect(t, h, name)
			if !ok || c.Image != idx.ImageIDs[platform] {
				t.Errorf("%s: %s runs %q (found %v), want the %s image %s", what, h, c.Image, ok, platform, idx.ImageIDs[platform])
			}
		}
		removeEverywhere(t, name)
	}

	// Pinned to the index: each host takes its own architecture's image.
	pinned := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Image: idx.Ref, Pin: "required", Suites: suites})
	runs("pinned index", pinned, "linux/amd64")

	// Not pinned, the platform forced: the hosts' pull takes it.
	forced := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Image: idx.Ref, Pin: "off", Suites: suites})
	withContainerKeys(t, forced, `platform = "linux/arm64"`)
	runs("pin off, platform linux/arm64", forced, "linux/arm64")

	// Pushed: the amd64 image, filed under the index digest + platform.
	pushed := writeCluster(t, clusterSpec{Lifetime: "persistent", Name: name, Image: idx.Ref, Suites: suites})
	withContainerKeys(t, pushed, `distribute = "push"`)
	runs("push", pushed, "linux/amd64")
	cached := func(when string) time.Time {
		t.Helper()
		out, _, code := runCVS(t, "--cluster", pushed, "--json", "image", "ls")
		var entries []struct {
			ImageID  string    `json:"image_id"`
			Digest   string    `json:"digest"`
			Platform string    `json:"platform"`
			LastUsed time.Time `json:"lastused"`
		}
		if err := json.Unmarshal([]byte(out), &entries); code != 0 || err != nil {
			t.Fatalf("%s: image ls: exit %d, %v\n%s", when, code, err, out)
		}
		if len(entries) != 1 || entries[0].Digest != idx.Digest || entries[0].Platform != "linux/amd64" || entries[0].ImageID != idx.ImageIDs["linux/amd64"] {
			t.Fatalf("%s: the cache holds %+v, want the amd64 image %s under the index %s", when, entries, idx.ImageIDs["linux/amd64"], idx.Digest)
		}
		return entries[0].LastUsed
	}
	first := cached("after the first push")
	if err := l.StopRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	runs("push, the registry stopped", pushed, "linux/amd64")
	if !cached("after the second push").After(first) {
		t.Error("the second push did not use the cache entry (its lastused did not move)")
	}
}

// Issue 21 item 2 on real hosts: a single-platform image (the lab's amd64
// workload image, no index) with platform = "linux/arm64" is refused
// before any change (exit 3), naming the key, the image's platform and
// the hosts with their architecture.
func TestSinglePlatformImageForAnotherPlatformRefused(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-single-platform"
	useContainer(t, name)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	if err := Lab(t).StartRegistry(testCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Pin: "required",
		Suites: "\n[suites.s]\n[[suites.s.steps]]\nname = \"noop\"\nrun = \"true\"\n"})
	withContainerKeys(t, file, `platform = "linux/arm64"`)
	out, errOut, code := runCVS(t, "--cluster", file, "run", "s")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, errOut)
	}
	var hosts []string
	for _, h := range hostNames(t) {
		hosts = append(hosts, cvsHost(t, h))
	}
	for _, want := range []string{`platform = "linux/arm64"`, "single-platform image for linux/amd64", report.HostList(hosts) + " (amd64)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, errOut)
		}
	}
	assertNoneLeft(t, name, "after the refusal")
}
