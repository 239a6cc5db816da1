//go:build e2e

package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/internal/browsertest"

	"github.com/chromedp/chromedp"
)

// Issue 12 on the lab: the HTML report of a run where host2 fails a step,
// opened in a real headless Chromium. Read from the rendered DOM: the page
// renders, its matrix has every host and step of the run, the failed cell
// is marked failed, the failed step's output is visible, and the chart
// marks the slow host.
func TestHTMLReportOnTheLab(t *testing.T) {
	runsIn(t, apiPass)
	const name = "e2e-report"
	useContainer(t, name)
	suites := `
[suites.check]
[[suites.check.steps]]
name = "probe"
run = """
echo "checking $(hostname)"
if [ "$(hostname)" = host3 ]; then sleep 2; fi
"""
[[suites.check.steps]]
name = "topology"
on = "head"
run = "echo head"
[[suites.check.steps]]
name = "gpu-check"
run = """
if [ "$(hostname)" = host2 ]; then echo "checking 8 GPUs"; echo "E: ECC errors on GPU 3" >&2; exit 4; fi
echo "8 GPUs healthy"
"""
[[suites.check.steps]]
name = "burn-in"
run = "echo never reached"
`
	file := writeCluster(t, clusterSpec{Lifetime: "per_run", Name: name, Suites: suites})
	if _, errOut, code := runCVS(t, "--cluster", file, "run", "check"); code != 1 {
		t.Fatalf("exit %d, want 1 (host2 fails)\n%s", code, errOut)
	}
	report := filepath.Join(t.TempDir(), "report.html")
	out, errOut, code := runCVS(t, "report", "-o", report)
	if code != 0 || strings.TrimSpace(out) != report {
		t.Fatalf("cvs report -o: exit %d\n%s%s", code, out, errOut)
	}

	ctx := browsertest.Context(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+report), chromedp.WaitVisible(chromedp.CSS("table.matrix"))); err != nil {
		t.Fatal(err)
	}
	// Visible: rendered (not in a closed <details>, not hidden) and taking
	// room on the page.
	page, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Title        string
		Hosts, Steps []string
		Cells        []struct{ Host, Step, Outcome, Class, Text string }
		FailedOutput []struct {
			Host, Step, Text string
			Visible          bool
		}
		SlowestProbe []string
	}](`(() => {
  const visible = el => !!el && el.checkVisibility({visibilityProperty: true, opacityProperty: true}) &&
    el.offsetParent !== null && el.getBoundingClientRect().height > 0;
  const all = sel => [...document.querySelectorAll(sel)];
  return {
    title: document.title,
    hosts: all("table.matrix tbody th").map(th => th.innerText.trim()),
    steps: all("table.matrix thead th").slice(1).map(th => th.innerText.trim()),
    cells: all("table.matrix td").map(td => ({host: td.dataset.host, step: td.dataset.step,
      outcome: td.dataset.outcome, class: td.className, text: td.innerText})),
    failedOutput: all("details.output[open]").map(d => ({host: d.dataset.host, step: d.dataset.step,
      text: d.querySelector("pre").innerText, visible: visible(d.querySelector("pre"))})),
    slowestProbe: all("svg.chart rect.slowest").map(r => r.parentNode.querySelector("title").textContent),
  };
})()`))
	if err != nil {
		t.Fatal(err)
	}

	var hosts []string
	for _, h := range hostNames(t) {
		hosts = append(hosts, cvsHost(t, h))
	}
	failedHost := cvsHost(t, "host2")
	if !strings.HasPrefix(page.Title, "cvs run ") || !strings.Contains(page.Title, "check") {
		t.Errorf("title %q", page.Title)
	}
	if !slices.Equal(page.Hosts, hosts) || !slices.Equal(page.Steps, []string{"probe", "topology", "gpu-check", "burn-in"}) {
		t.Errorf("matrix rows %q (want %q), columns %q", page.Hosts, hosts, page.Steps)
	}
	outcomes := map[string]int{}
	for _, c := range page.Cells {
		outcomes[c.Outcome]++
		failed := c.Host == failedHost && c.Step == "gpu-check"
		if failed != (c.Outcome == "fail") || failed && (c.Class != "c-fail" || !strings.Contains(c.Text, "FAIL") || !strings.Contains(c.Text, "exit 4")) {
			t.Errorf("cell %+v", c)
		}
	}
	// topology runs on the head only.
	if outcomes["pass"] != 6 || outcomes["fail"] != 1 || outcomes["notrun"] != 2+labHosts {
		t.Errorf("outcomes %v", outcomes)
	}
	if len(page.FailedOutput) != 1 || page.FailedOutput[0].Host != failedHost || !page.FailedOutput[0].Visible ||
		!strings.Contains(page.FailedOutput[0].Text, "err| E: ECC errors on GPU 3") || !strings.Contains(page.FailedOutput[0].Text, "out| checking 8 GPUs") {
		t.Errorf("the failed step's output is not visible: %+v", page.FailedOutput)
	}
	if len(page.SlowestProbe) == 0 || !strings.HasPrefix(page.SlowestProbe[0], cvsHost(t, "host3")+":") {
		t.Errorf("the chart does not mark host3 as probe's slowest: %q", page.SlowestProbe)
	}
}
