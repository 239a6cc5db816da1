package history

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/report"
)

// JUnit XML, as CI systems read it (the Jenkins/Ant schema): one
// testsuite per suite, one testcase per step and host.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name       string          `xml:"name,attr"`
	Classname  string          `xml:"classname,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Failure    *junitFailure   `xml:"failure,omitempty"`
	Error      *junitFailure   `xml:"error,omitempty"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// tailLines is how much of a step's output a testcase, or the HTML
// report, carries.
const tailLines = 40

// Step outcomes, as the JUnit XML and the HTML report classify them.
const (
	outcomePass  = "pass"
	outcomeFail  = "fail"  // the step ran and failed
	outcomeError = "error" // the step could not run or finish (exit -1)
)

// outcome classifies st; an infrastructure failure (the step did not
// finish: lost connection, timeout) is an error, not a failure.
func (st StepRecord) outcome() string {
	switch {
	case st.ExitCode == -1:
		return outcomeError
	case st.ExitCode != 0 || st.Error != "":
		return outcomeFail
	}
	return outcomePass
}

// stepLogs locates the stored output of a run's steps: each step and
// host's log, by the names the log files carry.
type stepLogs map[[2]string]string

// findStepLogs returns the stored logs of run id (none when it has none).
func findStepLogs(id string) stepLogs {
	logs, _ := LogFiles(id, "", "")
	m := stepLogs{}
	for _, l := range logs {
		m[[2]string{l.Step, l.Host}] = l.Path
	}
	return m
}

// logLine is one stored output line without its time stamp: the stream
// it came from (out, err; cvs for cvs's own notes) and its text.
type logLine struct {
	Stream, Text string
}

// tail returns the last n lines of st's stored output; none when it has
// no readable log.
func (l stepLogs) tail(st StepRecord, n int) []logLine {
	p, ok := l[[2]string{safeName(st.Step), safeName(st.Host)}]
	if !ok {
		return nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	t := report.Tail(string(data), n)
	if t == "" {
		return nil
	}
	var out []logLine
	for _, line := range strings.Split(t, "\n") {
		// "2026-12-01T09:00:00.123Z out| text"
		ll := logLine{Text: line}
		if stamped, rest, ok := strings.Cut(line, "| "); ok {
			_, ll.Stream, _ = strings.Cut(stamped, " ")
			ll.Text = rest
		}
		out = append(out, ll)
	}
	return out
}

// joinText is the lines' text alone, one a line (as the JUnit XML carries
// it).
func joinText(lines []logLine) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.Text)
	}
	return b.String()
}

func seconds(ms int64) string { return fmt.Sprintf("%.3f", float64(ms)/1000) }

// WriteJUnit writes the JUnit XML of run r: its suite as a testsuite, each
// step on each host as a testcase named "STEP on HOST" with the host as a
// property; a failed step carries the tail of its output (from the run's
// stored logs), an infrastructure failure (the step could not run) is an
// error.
func WriteJUnit(w io.Writer, r Record) error {
	s := junitSuite{Name: r.Suite, Timestamp: r.Start.UTC().Format(time.RFC3339), Hostname: "cvs",
		Time: seconds(r.End.Sub(r.Start).Milliseconds()),
		Properties: []junitProperty{{"cvs.run", r.ID}, {"cvs.cluster", r.Cluster}, {"cvs.image", r.Image},
			{"cvs.effective_image", r.EffectiveImage}, {"cvs.digest", r.Digest}, {"cvs.lifetime", r.Lifetime},
			{"cvs.version", r.Version}, {"cvs.exit_code", fmt.Sprint(r.ExitCode)}}}
	logs := findStepLogs(r.ID)
	for _, st := range r.Steps {
		c := junitCase{Name: st.Step + " on " + st.Host, Classname: r.Suite + "." + st.Step, Time: seconds(st.DurationMS),
			Properties: []junitProperty{{"host", st.Host}}}
		if o := st.outcome(); o != outcomePass {
			f := &junitFailure{Message: fmt.Sprintf("exit %d", st.ExitCode), Type: "exit", Text: joinText(logs.tail(st, tailLines))}
			if st.Error != "" {
				f.Message += ": " + st.Error
			}
			if o == outcomeError {
				f.Type = "infrastructure"
				c.Error = f
				s.Errors++
			} else {
				c.Failure = f
				s.Failures++
			}
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	if s.Tests == 0 && r.Error != "" {
		// Nothing ran: the run itself failed (refusal, setup).
		s.Cases = append(s.Cases, junitCase{Name: "setup", Classname: r.Suite + ".setup", Time: s.Time,
			Error: &junitFailure{Message: fmt.Sprintf("exit %d", r.ExitCode), Type: "setup", Text: r.Error}})
		s.Tests, s.Errors = 1, 1
	}
	doc := junitSuites{Name: "cvs run " + r.Suite, Tests: s.Tests, Failures: s.Failures, Errors: s.Errors, Time: s.Time, Suites: []junitSuite{s}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
