// Package browsertest drives a real headless Chromium (Debian's chromium
// package, which scripts/lab-deps.sh installs) for tests that check what a
// person sees of cvs's HTML reports.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Bin is Debian's chromium.
const Bin = "/usr/bin/chromium"

// Context returns a context driving a headless Chromium that ends with the
// test. Without the browser the test is skipped, or fails when
// CVS_REQUIRE_BROWSER=1 (make test sets it).
func Context(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		if os.Getenv("CVS_REQUIRE_BROWSER") == "1" {
			t.Fatalf("CVS_REQUIRE_BROWSER=1 but no browser: %v (scripts/lab-deps.sh installs Debian's chromium)", err)
		}
		t.Skipf("no browser at %s (scripts/lab-deps.sh installs Debian's chromium)", Bin)
	}
	// Root in a container: no sandbox; no GPU either.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(Bin), chromedp.NoSandbox, chromedp.DisableGPU)
	ctx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
