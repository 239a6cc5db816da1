package history

import (
	"encoding/xml"
	"fmt"
	"io"
	"time"
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

// tailLines is how much of a failed step's output a testcase carries.
const tailLines = 40

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
	logs, _ := LogFiles(r.ID, "", "")
	logOf := map[[2]string]string{}
	for _, l := range logs {
		logOf[[2]string{l.Step, l.Host}] = l.Path
	}
	steps := append([]StepRecord(nil), r.Steps...)
	for _, st := range steps {
		c := junitCase{Name: st.Step + " on " + st.Host, Classname: r.Suite + "." + st.Step, Time: seconds(st.DurationMS),
			Properties: []junitProperty{{"host", st.Host}}}
		if st.ExitCode != 0 || st.Error != "" {
			tail := ""
			if p, ok := logOf[[2]string{safeName(st.Step), safeName(st.Host)}]; ok {
				tail, _ = Tail(p, tailLines)
			}
			f := &junitFailure{Message: fmt.Sprintf("exit %d", st.ExitCode), Type: "exit", Text: tail}
			if st.Error != "" {
				f.Message += ": " + st.Error
			}
			if st.ExitCode == -1 {
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
