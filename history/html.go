package history

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

// ReportFile is the HTML report's name in its run's folder.
const ReportFile = "report.html"

//go:embed report.html.tmpl
var reportTemplate string

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{"short": shortID}).Parse(reportTemplate))

// The duration chart's geometry, in SVG user units.
const (
	chartLabelW = 240 // the host names left of the bars
	chartBarW   = 520 // the longest bar
	chartTextW  = 110 // the duration right of a bar
	chartRowH   = 20
)

// htmlPage is what the report's template shows, every value already in
// the words and units a reader sees.
type htmlPage struct {
	ID, Command, Title, Summary, Error string
	Result                             string // passed, failed, in progress
	Fields                             []htmlField
	Hosts                              []htmlHost
	Steps                              []string
	Matrix                             []htmlRow
	Chart                              htmlChart
	Failing, Passing                   []htmlOutput
	TailLines                          int
}

type htmlField struct{ Name, Value string }

type htmlHost struct {
	Host, Action, ContainerID, ImageID, StartedAt, Pushed string
}

// htmlRow is one host's row of the host × step matrix.
type htmlRow struct {
	Host  string
	Cells []htmlCell
}

type htmlCell struct {
	Step, Outcome, Exit, Duration, Anchor string
}

type htmlChart struct {
	W, H, BarX int
	Scale      string // the duration of the longest bar
	Headings   []htmlHeading
	Bars       []htmlBar
}

type htmlHeading struct {
	Y    int
	Step string
}

type htmlBar struct {
	Y, W, TextX, TextY int
	Host, Label, Dur   string
	Outcome            string
	Slowest            bool
}

// htmlOutput is the tail of one step's output on one host.
type htmlOutput struct {
	Anchor, Step, Host, Outcome, Exit, Duration, Error string
	Lines                                              []logLine
}

// WriteHTML writes the report of run r as one self-contained HTML page
// (inline style, a few lines of inline script, no external resource): the
// run's header (command line, image and digest, lifetime, verdict, exit
// code, cvs version), each host's lifetime decision and container, the
// host × step matrix coloured by outcome, the steps' durations as a chart,
// and the tail of each step's stored output, failures first and open.
// Every value from the record or the logs is HTML-escaped.
func WriteHTML(w io.Writer, r Record) error {
	return reportPage.Execute(w, newHTMLPage(r))
}

func newHTMLPage(r Record) htmlPage {
	command := orDash(r.Command)
	p := htmlPage{ID: r.ID, Command: command, Title: fmt.Sprintf("cvs %s %s: %s on %s", command, r.ID, orDash(r.Suite), orDash(r.Cluster)),
		Error: r.Error, Result: "in progress", TailLines: tailLines}
	end, took := "(in progress)", "(in progress)"
	if !r.End.IsZero() {
		end, took = stamp(r.End), duration(r.End.Sub(r.Start).Milliseconds())
		p.Result = "failed"
		if r.ExitCode == 0 {
			p.Result = "passed"
		}
	}
	for _, f := range [][2]string{{"run", r.ID}, {"command line", r.CommandLine}, {"cluster", r.Cluster},
		{"suite", r.Suite}, {"lifetime", r.Lifetime}, {"verdict", r.Verdict}, {"exit code", fmt.Sprint(r.ExitCode)},
		{"start", stamp(r.Start)}, {"end", end}, {"duration", took}, {"cvs version", r.Version},
		{"image (configured)", r.Image}, {"site", r.Site}, {"effective image", r.EffectiveImage},
		{"launched image", r.LaunchedImage}, {"digest", r.Digest}, {"distribution", r.Distribution}} {
		if f[0] != "site" || f[1] != "" {
			p.Fields = append(p.Fields, htmlField{f[0], orDash(f[1])})
		}
	}
	for _, h := range r.Hosts {
		pushed := "-"
		if h.PushedBytes > 0 || h.PushedLayers > 0 {
			pushed = fmt.Sprintf("%.1f MiB (%d layers)", float64(h.PushedBytes)/(1<<20), h.PushedLayers)
		}
		p.Hosts = append(p.Hosts, htmlHost{Host: h.Host, Action: orDash(h.Action), ContainerID: orDash(h.ContainerID),
			ImageID: orDash(h.ImageID), StartedAt: orDash(h.StartedAt), Pushed: pushed})
	}

	// The matrix: every host of the record, then any host only a step
	// names; every step in the order it first ran.
	hosts, steps := r.hostsAndSteps()
	p.Steps = steps
	cell := map[[2]string]int{} // step, host → index in r.Steps
	for i, st := range r.Steps {
		cell[[2]string{st.Step, st.Host}] = i
	}
	anchor := func(i int) string { return fmt.Sprintf("out-%d", i) }
	for _, h := range hosts {
		row := htmlRow{Host: h}
		for _, s := range steps {
			c := htmlCell{Step: s, Outcome: "notrun", Exit: "not run"}
			if i, ok := cell[[2]string{s, h}]; ok {
				st := r.Steps[i]
				c = htmlCell{Step: s, Outcome: st.outcome(), Exit: fmt.Sprintf("exit %d", st.ExitCode),
					Duration: duration(st.DurationMS), Anchor: anchor(i)}
			}
			row.Cells = append(row.Cells, c)
		}
		p.Matrix = append(p.Matrix, row)
	}

	logs := findStepLogs(r.ID)
	counts := map[string]int{}
	for i, st := range r.Steps {
		o := htmlOutput{Anchor: anchor(i), Step: st.Step, Host: st.Host, Outcome: st.outcome(),
			Exit: fmt.Sprintf("exit %d", st.ExitCode), Duration: duration(st.DurationMS), Error: st.Error,
			Lines: logs.tail(st, tailLines)}
		counts[o.Outcome]++
		if o.Outcome == outcomePass {
			p.Passing = append(p.Passing, o)
		} else {
			p.Failing = append(p.Failing, o)
		}
	}
	p.Summary = fmt.Sprintf("%d hosts, %d steps: %d passed, %d failed, %d could not run, %d not run",
		len(hosts), len(steps), counts[outcomePass], counts[outcomeFail], counts[outcomeError],
		len(hosts)*len(steps)-len(r.Steps))
	p.Chart = newHTMLChart(r.Steps, hosts, steps, cell)
	return p
}

// hostsAndSteps returns the record's hosts (those of the plan, then any
// only a step names) and its steps: the suite's, in order, then any other
// that ran.
func (r Record) hostsAndSteps() (hosts, steps []string) {
	seenHost, seenStep := map[string]bool{}, map[string]bool{}
	addHost := func(h string) {
		if !seenHost[h] {
			seenHost[h] = true
			hosts = append(hosts, h)
		}
	}
	addStep := func(s string) {
		if !seenStep[s] {
			seenStep[s] = true
			steps = append(steps, s)
		}
	}
	for _, h := range r.Hosts {
		addHost(h.Host)
	}
	for _, s := range r.SuiteSteps {
		addStep(s)
	}
	for _, st := range r.Steps {
		addHost(st.Host)
		addStep(st.Step)
	}
	return hosts, steps
}

// newHTMLChart lays out the durations: per step, one bar per host that
// ran it, all on one scale, so that a slow host stands out.
func newHTMLChart(recs []StepRecord, hosts, steps []string, cell map[[2]string]int) htmlChart {
	c := htmlChart{BarX: chartLabelW, W: chartLabelW + chartBarW + chartTextW}
	var longest int64
	for _, st := range recs {
		longest = max(longest, st.DurationMS)
	}
	c.Scale = duration(longest)
	y := 0
	for _, s := range steps {
		y += chartRowH
		c.Headings = append(c.Headings, htmlHeading{Y: y - 5, Step: s})
		var ran []StepRecord
		var slowest int64
		for _, h := range hosts {
			if i, ok := cell[[2]string{s, h}]; ok {
				ran = append(ran, recs[i])
				slowest = max(slowest, recs[i].DurationMS)
			}
		}
		for _, st := range ran {
			w := 1
			if longest > 0 {
				w = max(1, int(st.DurationMS*chartBarW/longest))
			}
			c.Bars = append(c.Bars, htmlBar{Y: y + 3, W: w, TextX: chartLabelW + w + 6, TextY: y + 15, Host: st.Host,
				Label: clip(st.Host, 34), Dur: duration(st.DurationMS), Outcome: st.outcome(),
				// Marked only when another host of the step was faster.
				Slowest: len(ran) > 1 && st.DurationMS == slowest})
			y += chartRowH
		}
		y += chartRowH / 2
	}
	c.H = y + 4
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func duration(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// shortID is a container or image ID as docker ps shows it (12 hex
// digits); the page has the whole ID as the cell's title.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// clip keeps a chart label inside the chart's label column.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Prefix is how the report shows the line's stream, as cvs logs does:
// "out| ", "err| ".
func (l logLine) Prefix() string {
	if l.Stream == "" {
		return ""
	}
	return l.Stream + "| "
}
