package report

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"
)

// Live is the live view of a suite on a terminal: one row per host with
// the step it runs, how long it has run, and the last line it printed,
// redrawn in place (by bubbletea) instead of interleaved scrolling output.
// Lines printed through Println appear above the table. The zero value is
// not usable; start one with StartLive.
type Live struct {
	p    *tea.Program
	done chan struct{}
	once sync.Once
}

// StartLive starts the live view of hosts on w (a terminal). With noColor
// (NO_COLOR set, say) it draws without colours.
func StartLive(w io.Writer, hosts []string, noColor bool) *Live {
	m := newLiveModel(w, hosts, noColor)
	l := &Live{done: make(chan struct{})}
	l.p = tea.NewProgram(m, tea.WithOutput(w), tea.WithInput(nil), tea.WithoutSignalHandler())
	go func() {
		l.p.Run()
		close(l.done)
	}()
	return l
}

// StepStarted says that step starts on hosts.
func (l *Live) StepStarted(step string, hosts []string) {
	l.p.Send(stepStarted{step: step, hosts: hosts, at: time.Now()})
}

// StepDone says that step ended on host with exit code code (-1: it did
// not finish).
func (l *Live) StepDone(host string, code int) {
	l.p.Send(stepDone{host: host, code: code, at: time.Now()})
}

// Output returns a writer whose lines become host's last line.
func (l *Live) Output(host string) io.Writer {
	return &lineWriter{fn: func(line string) { l.p.Send(outputLine{host: host, line: line}) }}
}

// Println prints a line above the table.
func (l *Live) Println(line string) { l.p.Println(line) }

// Stop draws the table a last time and leaves it on the terminal.
func (l *Live) Stop() {
	l.once.Do(func() {
		l.p.Quit()
		<-l.done
	})
}

// LineWriter is an io.Writer that calls fn with each whole line.
func LineWriter(fn func(line string)) io.Writer { return &lineWriter{fn: fn} }

type lineWriter struct {
	mu    sync.Mutex
	lines Lines
	fn    func(string)
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines.Write(b, w.emit)
	return len(b), nil
}

func (w *lineWriter) emit(line []byte) { w.fn(string(bytes.TrimRight(line, "\r"))) }

type (
	stepStarted struct {
		step  string
		hosts []string
		at    time.Time
	}
	stepDone struct {
		host string
		code int
		at   time.Time
	}
	outputLine struct{ host, line string }
	tick       time.Time
)

// liveRow is one host's row.
type liveRow struct {
	host, step, last string
	start, end       time.Time
	running          bool
	code             int
	ran              bool
}

type liveModel struct {
	rows   []*liveRow
	byHost map[string]*liveRow
	now    func() time.Time
	style  liveStyle
}

type liveStyle struct {
	ok, fail, run, dim lipgloss.Style
}

func newLiveModel(w io.Writer, hosts []string, noColor bool) *liveModel {
	r := lipgloss.NewRenderer(w)
	if noColor {
		r.SetColorProfile(termenv.Ascii)
	}
	m := &liveModel{byHost: map[string]*liveRow{}, now: time.Now, style: liveStyle{
		ok: r.NewStyle().Foreground(lipgloss.Color("2")), fail: r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		run: r.NewStyle().Foreground(lipgloss.Color("3")), dim: r.NewStyle().Faint(true),
	}}
	for _, h := range hosts {
		row := &liveRow{host: h}
		m.rows = append(m.rows, row)
		m.byHost[h] = row
	}
	return m
}

func (m *liveModel) Init() tea.Cmd { return tickEvery() }

func tickEvery() tea.Cmd {
	return tea.Tick(250*time.Millisecond, func(t time.Time) tea.Msg { return tick(t) })
}

func (m *liveModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case stepStarted:
		for _, h := range msg.hosts {
			if r := m.byHost[h]; r != nil {
				r.step, r.last, r.start, r.end, r.running, r.ran = msg.step, "", msg.at, time.Time{}, true, true
			}
		}
	case stepDone:
		if r := m.byHost[msg.host]; r != nil {
			r.running, r.code, r.end = false, msg.code, msg.at
		}
	case outputLine:
		if r := m.byHost[msg.host]; r != nil && strings.TrimSpace(msg.line) != "" {
			r.last = msg.line
		}
	case tick:
		return m, tickEvery()
	}
	return m, nil
}

func (m *liveModel) View() string {
	t := table.New().Border(lipgloss.HiddenBorder()).Headers("HOST", "STEP", "STATE", "ELAPSED", "LAST LINE")
	for _, r := range m.rows {
		state, elapsed := m.style.dim.Render("waiting"), ""
		switch {
		case r.running:
			state, elapsed = m.style.run.Render("running"), m.now().Sub(r.start).Round(100*time.Millisecond).String()
		case r.ran && r.code == 0:
			state, elapsed = m.style.ok.Render("ok"), r.end.Sub(r.start).Round(time.Millisecond).String()
		case r.ran:
			what := fmt.Sprintf("exit %d", r.code)
			if r.code < 0 {
				what = "did not finish"
			}
			state, elapsed = m.style.fail.Render(what), r.end.Sub(r.start).Round(time.Millisecond).String()
		}
		t.Row(r.host, r.step, state, elapsed, clipLine(r.last, 60))
	}
	return t.Render() + "\n"
}

// clipLine shortens a line to n runes.
func clipLine(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// NoColor reports whether colour is turned off (https://no-color.org).
func NoColor() bool { return os.Getenv("NO_COLOR") != "" }
