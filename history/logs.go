package history

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/report"
)

// MaxLogBytes bounds what one run stores of its steps' output; past it,
// each log says so once and keeps nothing more.
var MaxLogBytes int64 = 256 << 20

// Logs stores a run's step output: one file per step and host,
// logs/STEP/HOST.log in the run's folder, each line stamped with its time
// and stream ("2026-12-01T09:00:00.123Z out| text").
type Logs struct {
	dir string

	mu    sync.Mutex
	total int64
}

// NewLogs returns the logs of run id (its folder is made as needed).
func NewLogs(id string) (*Logs, error) {
	dir, err := RunDir(id)
	if err != nil {
		return nil, err
	}
	return &Logs{dir: filepath.Join(dir, "logs")}, nil
}

// safeName keeps a step or host name usable as a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\n' {
			return '_'
		}
		return r
	}, s)
}

// File is the log file of one step on one host.
func (l *Logs) File(step, host string) string {
	return filepath.Join(l.dir, safeName(step), safeName(host)+".log")
}

// Open returns the writers of one step on one host (stdout, stderr) and a
// function that ends the log.
func (l *Logs) Open(step, host string) (stdout, stderr io.Writer, done func(), err error) {
	if err := os.MkdirAll(filepath.Dir(l.File(step, host)), 0o700); err != nil {
		return nil, nil, nil, err
	}
	f, err := os.OpenFile(l.File(step, host), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	w := &logFile{l: l, f: f}
	out, errw := &stream{w: w, tag: "out"}, &stream{w: w, tag: "err"}
	return out, errw, func() {
		out.flush()
		errw.flush()
		f.Close()
	}, nil
}

type logFile struct {
	l      *Logs
	mu     sync.Mutex
	f      *os.File
	capped bool
}

func (w *logFile) line(tag string, text []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.capped {
		return
	}
	rec := fmt.Appendf(nil, "%s %s| %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), tag, text)
	w.l.mu.Lock()
	over := w.l.total+int64(len(rec)) > MaxLogBytes
	if !over {
		w.l.total += int64(len(rec))
	}
	w.l.mu.Unlock()
	if over {
		w.capped = true
		fmt.Fprintf(w.f, "%s cvs| the run's logs reached their cap (%d bytes); the rest of this output is not stored\n",
			time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), MaxLogBytes)
		return
	}
	w.f.Write(rec)
}

// stream cuts one output stream into lines (at most report.MaxLine bytes
// each).
type stream struct {
	w     *logFile
	tag   string
	lines report.Lines
}

func (s *stream) Write(b []byte) (int, error) {
	s.lines.Write(b, s.line)
	return len(b), nil
}

func (s *stream) line(text []byte) { s.w.line(s.tag, text) }

func (s *stream) flush() { s.lines.Flush(s.line) }

// LogFile is one stored log.
type LogFile struct {
	Step, Host, Path string
}

// LogFiles lists the logs of run id, filtered by step and host ("" any),
// in step order of their first line, then host.
func LogFiles(id, step, host string) ([]LogFile, error) {
	dir, err := RunDir(id)
	if err != nil {
		return nil, err
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "logs", "*", "*.log"))
	var out []LogFile
	for _, m := range matches {
		lf := LogFile{Step: filepath.Base(filepath.Dir(m)), Host: strings.TrimSuffix(filepath.Base(m), ".log"), Path: m}
		if (step == "" || lf.Step == step) && (host == "" || lf.Host == host) {
			out = append(out, lf)
		}
	}
	first := func(p string) string {
		f, err := os.Open(p)
		if err != nil {
			return ""
		}
		defer f.Close()
		line, _ := bufio.NewReader(f).ReadString(' ')
		return line
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Step != out[j].Step {
			return first(out[i].Path) < first(out[j].Path)
		}
		return out[i].Host < out[j].Host
	})
	return out, nil
}

// LogText is the text of a stored log: its lines without their time
// stamps and streams, stdout and stderr interleaved as they came.
func LogText(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(data))
	for line := range strings.Lines(string(data)) {
		// "2026-12-01T09:00:00.123Z out| text"
		if _, text, ok := strings.Cut(line, "| "); ok {
			line = text
		}
		b.WriteString(line)
	}
	return b.String(), nil
}
