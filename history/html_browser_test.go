package history

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/internal/browsertest"

	"github.com/chromedp/chromedp"
)

// renderedPage is what the browser shows of a report, read from its DOM.
type renderedPage struct {
	Title   string
	Hosts   []string // the matrix's row headers
	Steps   []string // its column headers
	Cells   []renderedCell
	Outputs []renderedOutput
	Scripts int
}

type renderedCell struct {
	Host, Step, Outcome, Text, Background string
}

type renderedOutput struct {
	Host, Step, Text string
	Open, Visible    bool
}

// readPage is the script that reads a report's DOM into a renderedPage.
// An element is visible when the browser renders it and it takes room on
// the page (the content of a closed <details> has a box but is not
// rendered: checkVisibility says so).
const readPage = `(() => {
  const visible = el => !!el && el.checkVisibility({visibilityProperty: true, opacityProperty: true}) &&
    el.offsetParent !== null && el.getBoundingClientRect().height > 0;
  const text = sel => [...document.querySelectorAll(sel)].map(e => e.innerText.trim());
  return {
    title: document.title,
    hosts: text("table.matrix tbody th"),
    steps: text("table.matrix thead th").slice(1),
    cells: [...document.querySelectorAll("table.matrix td")].map(td => ({
      host: td.dataset.host, step: td.dataset.step, outcome: td.dataset.outcome,
      text: td.innerText.trim(), background: getComputedStyle(td).backgroundColor})),
    outputs: [...document.querySelectorAll("details.output")].map(d => ({
      host: d.dataset.host, step: d.dataset.step, text: d.innerText, open: d.open, visible: visible(d.querySelector("pre"))})),
    scripts: document.scripts.length,
  };
})()`

// The report of a synthetic run, opened in a real browser: every host and
// step in the matrix, outcomes coloured apart, hostile names shown as
// text (no script of theirs runs), the failed step's output visible, and
// a cell's link opening collapsed output.
func TestHTMLReportInChromium(t *testing.T) {
	r := syntheticRun(t)
	file := filepath.Join(t.TempDir(), ReportFile)
	if err := os.WriteFile(file, []byte(renderHTML(t, r)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := browsertest.Context(t)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file), chromedp.WaitVisible(chromedp.CSS("table.matrix"))); err != nil {
		t.Fatal(err)
	}
	page, err := chromedp.Run(ctx, chromedp.Evaluate[renderedPage](readPage))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(page.Title, "cvs run "+r.ID) || page.Scripts != 1 {
		t.Errorf("title %q, %d scripts", page.Title, page.Scripts)
	}
	if strings.Join(page.Hosts, "|") != "n1|n2|"+evilHost+"|n4" || strings.Join(page.Steps, "|") != "install|gpu-check|"+evilStep {
		t.Errorf("matrix rows %q, columns %q", page.Hosts, page.Steps)
	}
	background := map[string]string{}
	for _, c := range page.Cells {
		if prev, ok := background[c.Outcome]; ok && prev != c.Background {
			t.Errorf("%s cells in two colours: %s, %s", c.Outcome, prev, c.Background)
		}
		background[c.Outcome] = c.Background
		if c.Host == "n2" && c.Step == "gpu-check" && (c.Outcome != "fail" || !strings.Contains(c.Text, "FAIL")) {
			t.Errorf("the failed cell: %+v", c)
		}
	}
	if len(page.Cells) != 12 || len(background) != 4 || background["pass"] == background["fail"] {
		t.Errorf("%d cells, colours by outcome %v", len(page.Cells), background)
	}
	failed := false
	for _, o := range page.Outputs {
		if o.Host == "n2" && o.Step == "gpu-check" {
			failed = o.Open && o.Visible && strings.Contains(o.Text, "err| E: ECC errors on GPU 3 <uncorrectable> & rising")
		}
		if o.Step == "install" && (o.Open || o.Visible) {
			t.Errorf("passing output open: %+v", o)
		}
	}
	if !failed {
		t.Errorf("the failed step's output is not visible: %+v", page.Outputs)
	}

	// n1's install cell links to its collapsed output, which opens (on the
	// hashchange event the click queues).
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`td[data-host="n1"][data-step="install"] a`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("out-0").open && document.querySelector("#out-0 pre").checkVisibility()`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the cell's link did not open its output: %v", err)
	}
}
