package history

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Names that would break the page if they reached it unescaped.
const (
	evilHost = `n3<script>alert("host")</script>`
	evilStep = `dmesg & <b>grep</b>`
)

// syntheticRun saves, under a fresh $XDG_STATE_HOME, the record and logs
// of a run on 4 hosts: "install" passes everywhere (100 lines of output
// each, n2 much slower), "gpu-check" fails on n2 (exit 4, the ECC errors
// on stderr), could not run on n4 (the connection was lost) and was not
// reached on evilHost, and evilStep ran on n1 only.
func syntheticRun(t *testing.T) Record {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	r := Record{ID: "0123456789abcdef", Command: "run", CommandLine: "cvs run check --junit j.xml", Cluster: "/etc/cvs/<lab>.toml",
		Suite: "check", Lifetime: "per_run", Image: "reg:5000/gpu:1", EffectiveImage: "reg:5000/gpu:1",
		LaunchedImage: "reg:5000/gpu@sha256:feed", Digest: "sha256:feed", Distribution: "push", Verdict: "launch",
		Start: start, End: start.Add(95 * time.Second), Version: "v1.2.3", ExitCode: 1,
		Error: `step "gpu-check" failed on 2 hosts`}
	for i, h := range []string{"n1", "n2", evilHost, "n4"} {
		r.Hosts = append(r.Hosts, HostRecord{Host: h, Action: "launch", ContainerID: fmt.Sprintf("c%063d", i),
			ImageID: "sha256:" + strings.Repeat("ab", 32), StartedAt: "2026-12-01T09:00:05Z", PushedBytes: 3 << 20, PushedLayers: 2})
		ms := int64(1500)
		if h == "n2" {
			ms = 42000
		}
		r.Steps = append(r.Steps, StepRecord{Step: "install", Host: h, DurationMS: ms})
	}
	r.Steps = append(r.Steps,
		StepRecord{Step: "gpu-check", Host: "n1", DurationMS: 800},
		StepRecord{Step: "gpu-check", Host: "n2", ExitCode: 4, DurationMS: 900},
		StepRecord{Step: "gpu-check", Host: "n4", ExitCode: -1, DurationMS: 300, Error: "the connection to n4 was lost"},
		StepRecord{Step: evilStep, Host: "n1", DurationMS: 10})
	logs, err := NewLogs(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	write := func(step, host string, fn func(out, errw func(string))) {
		o, e, done, err := logs.Open(step, host)
		if err != nil {
			t.Fatal(err)
		}
		fn(func(s string) { fmt.Fprintln(o, s) }, func(s string) { fmt.Fprintln(e, s) })
		done()
	}
	for _, h := range []string{"n1", "n2", evilHost, "n4"} {
		write("install", h, func(out, _ func(string)) {
			for i := 1; i <= 100; i++ {
				out(fmt.Sprintf("installing on %s: line %d", h, i))
			}
		})
	}
	write("gpu-check", "n1", func(out, _ func(string)) { out("all 8 GPUs healthy") })
	write("gpu-check", "n2", func(out, errw func(string)) {
		out("checking 8 GPUs")
		errw("E: ECC errors on GPU 3 <uncorrectable> & rising")
	})
	write(evilStep, "n1", func(out, _ func(string)) { out("</pre><script>alert('out')</script>") })
	if _, err := Save(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func renderHTML(t *testing.T, r Record) string {
	t.Helper()
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHTMLReportShowsTheRun(t *testing.T) {
	page := renderHTML(t, syntheticRun(t))
	for _, want := range []string{
		"<title>cvs run 0123456789abcdef: check on /etc/cvs/&lt;lab&gt;.toml</title>", `<span class="verdict bad">failed</span>`,
		"cvs run check --junit j.xml", "reg:5000/gpu@sha256:feed", "sha256:feed", "v1.2.3", "per_run", "push", "1m35s",
		"3.0 MiB (2 layers)", "2026-12-01T09:00:05Z", `title="c` + strings.Repeat("0", 63) + `">c00000000000<`, ">abababababab<",
		// The matrix: each host a row, each step a column, each cell its outcome.
		`<th scope="row" class="mono">n1</th>`, `<th scope="row" class="mono">n4</th>`,
		`<th class="mono">install</th>`, `<th class="mono">gpu-check</th>`,
		`data-host="n2" data-step="gpu-check" data-outcome="fail"`,
		`data-host="n4" data-step="gpu-check" data-outcome="error"`,
		`data-host="n1" data-step="gpu-check" data-outcome="pass"`,
		`data-step="gpu-check" data-outcome="notrun">not run</td>`,
		"exit 4 · 900ms", `href="#out-5"`, `id="out-5"`,
		// The failing output, with its stream, open; the passing collapsed.
		`<span class="s-out">out| </span>checking 8 GPUs`,
		`<span class="s-err">err| </span>E: ECC errors on GPU 3 &lt;uncorrectable&gt; &amp; rising`,
		"the connection to n4 was lost",
		"installing on n2: line 100",
		// The chart: n2 is install's slowest host, its bar the longest.
		`<rect class="pass slowest" x="240" y="43" width="520"`, "42s",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, h := range []string{"n1", "n2", "n4"} {
		if strings.Count(page, `data-host="`+h+`"`) < 3 {
			t.Errorf("host %s is not in every column of the matrix", h)
		}
	}
	if strings.Contains(page, "line 60\n") || !strings.Contains(page, "line 61\n") {
		t.Errorf("a step's output is not its last %d lines", tailLines)
	}
	if regexp.MustCompile(`<details class="output"[^>]* open>\n<summary class="c-pass"`).MatchString(page) ||
		!regexp.MustCompile(`<details class="output" id="out-5"[^>]* open>\n<summary class="c-fail"`).MatchString(page) {
		t.Error("the failing output is not open, or a passing one is")
	}
	if i, j := strings.Index(page, "E: ECC errors"), strings.Index(page, "installing on n1"); i > j {
		t.Error("the failing output does not come before the passing")
	}
}

// Names and output from the record and the logs are text on the page,
// never markup, and the page loads nothing from anywhere.
func TestHTMLReportEscapes(t *testing.T) {
	page := renderHTML(t, syntheticRun(t))
	for _, bad := range []string{"<script>alert", "<b>grep</b>", "</pre><script>", `src=`, `<link`, `href="http`, `url(`} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	for _, want := range []string{"n3&lt;script&gt;alert(&#34;host&#34;)&lt;/script&gt;", "dmesg &amp; &lt;b&gt;grep&lt;/b&gt;",
		"&lt;/pre&gt;&lt;script&gt;alert(&#39;out&#39;)&lt;/script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks the escaped %q", want)
		}
	}
	if n := strings.Count(page, "<script>"); n != 1 {
		t.Errorf("%d scripts, want the report's own one", n)
	}
}

// A run that refused before any step, and one still in progress, have a
// page too.
func TestHTMLReportWithoutSteps(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	r := Record{ID: "fedcba9876543210", Command: "run", Suite: "test", ExitCode: 5, Start: time.Now(), End: time.Now(),
		Error: "the container runs on 2 of 3 hosts", Hosts: []HostRecord{{Host: "n1", Action: "refuse"}}}
	page := renderHTML(t, r)
	for _, want := range []string{"No step ran.", "No step failed.", "the container runs on 2 of 3 hosts", "refuse", `<span class="verdict bad">failed</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("refused run: the page lacks %q", want)
		}
	}
	r.End, r.ExitCode, r.Error = time.Time{}, -1, ""
	if page := renderHTML(t, r); !strings.Contains(page, `<span class="verdict ">in progress</span>`) || !strings.Contains(page, "<dd class=\"mono\">(in progress)</dd>") {
		t.Error("a run in progress is not shown as such")
	}
}
