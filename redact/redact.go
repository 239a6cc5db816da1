// Package redact masks secret values in what cvs prints and stores: a
// run's step output goes through one Masker on its way to the terminal,
// the logs, the run record and the reports built from it.
package redact

import (
	"bytes"
	"io"
	"slices"
	"strings"
)

// Mask stands for a secret value.
const Mask = "***"

// MinLen is the shortest secret masked. Masking every "1" or "yes" in a
// step's output would make it unreadable, and which characters vanished
// would tell the value anyway.
const MinLen = 4

// Masker replaces secret values with Mask. A nil *Masker masks nothing.
type Masker struct {
	secrets [][]byte
}

// New returns a Masker of the secrets at least MinLen long, or nil when
// there is none.
func New(secrets []string) *Masker {
	var keep []string
	for _, s := range secrets {
		if len(s) >= MinLen && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	m := &Masker{}
	for _, s := range keep {
		m.secrets = append(m.secrets, []byte(s))
	}
	return m
}

// span is a masked stretch [start, end) of a text.
type span struct{ start, end int }

// spans returns the stretches of b that hold a secret, in order, merged
// where occurrences overlap or touch: overlapping secrets are masked as
// one, so that no part of either survives.
func (m *Masker) spans(b []byte) []span {
	var out []span
	for _, s := range m.secrets {
		for from := 0; ; {
			i := bytes.Index(b[from:], s)
			if i < 0 {
				break
			}
			out = append(out, span{from + i, from + i + len(s)})
			from += i + 1
		}
	}
	if len(out) < 2 {
		return out
	}
	slices.SortFunc(out, func(a, b span) int { return a.start - b.start })
	merged := out[:1]
	for _, sp := range out[1:] {
		last := &merged[len(merged)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

func (m *Masker) mask(b []byte) []byte {
	sps := m.spans(b)
	if len(sps) == 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	at := 0
	for _, sp := range sps {
		out = append(out, b[at:sp.start]...)
		out = append(out, Mask...)
		at = sp.end
	}
	return append(out, b[at:]...)
}

// String returns s with every secret masked.
func (m *Masker) String(s string) string {
	if m == nil || s == "" {
		return s
	}
	return string(m.mask([]byte(s)))
}

// Truncated is String for the end of a longer text: a start of s that is
// the end of a secret whose beginning was cut away is masked too.
func (m *Masker) Truncated(s string) string {
	if m == nil {
		return s
	}
	cut := 0
	for _, sec := range m.secrets {
		for k := len(sec) - 1; k > cut; k-- {
			if strings.HasPrefix(s, string(sec[len(sec)-k:])) {
				cut = k
				break
			}
		}
	}
	if cut == 0 {
		return m.String(s)
	}
	return Mask + m.String(s[cut:])
}

// Writer masks what is written to it on its way to another writer. A
// secret may arrive split across writes: the Writer holds back a tail
// that could begin one (at most the longest secret's length), and passes
// everything else on at once. Flush writes the tail when the output ends.
// A Writer is not safe for concurrent use.
type Writer struct {
	m   *Masker
	w   io.Writer
	buf []byte
}

// Writer returns a Writer into w.
func (m *Masker) Writer(w io.Writer) *Writer { return &Writer{m: m, w: w} }

// Write masks p with what was held back before it. It reports p as
// written when what it passed on was.
func (w *Writer) Write(p []byte) (int, error) {
	if w.m == nil {
		return w.w.Write(p)
	}
	w.buf = append(w.buf, p...)
	cut := w.safe()
	if cut == 0 {
		return len(p), nil
	}
	_, err := w.w.Write(w.m.mask(w.buf[:cut]))
	w.buf = append(w.buf[:0], w.buf[cut:]...)
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// safe is how much of the buffer can be passed on: all but the longest
// tail that is the start of a secret, and never half of a secret found
// whole.
func (w *Writer) safe() int {
	b := w.buf
	cut := len(b)
	for _, s := range w.m.secrets {
		for k := min(len(s)-1, len(b)); k > 0 && len(b)-k < cut; k-- {
			if bytes.HasSuffix(b, s[:k]) {
				cut = len(b) - k
				break
			}
		}
	}
	for _, sp := range w.m.spans(b) {
		if sp.start < cut && cut < sp.end {
			return sp.start
		}
	}
	return cut
}

// Flush writes what is held back, masked.
func (w *Writer) Flush() error {
	if w.m == nil || len(w.buf) == 0 {
		return nil
	}
	out := w.m.mask(w.buf)
	w.buf = w.buf[:0]
	_, err := w.w.Write(out)
	return err
}
