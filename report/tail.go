package report

import (
	"fmt"
	"sync"
)

// TailBuffer keeps the last Max bytes written to it, in constant memory
// and time linear in what is written: the part of a command's output that
// errors, results and reports carry, whatever the command printed. It is
// safe for concurrent writers (a command's stdout and stderr together).
type TailBuffer struct {
	mu      sync.Mutex
	max     int
	ring    []byte // grows with what is written, up to max
	start   int    // index of the oldest byte when full
	full    bool
	dropped int64
}

// NewTailBuffer returns a TailBuffer keeping the last max bytes.
func NewTailBuffer(max int) *TailBuffer {
	return &TailBuffer{max: max}
}

// Write keeps the end of p; it never fails.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	max := t.max
	if max <= 0 {
		t.dropped += int64(n)
		return n, nil
	}
	if len(p) >= max {
		t.dropped += int64(t.size() + len(p) - max)
		t.ring = append(t.ring[:0], p[len(p)-max:]...)
		t.start, t.full = 0, true
		return n, nil
	}
	for len(p) > 0 {
		if !t.full {
			k := min(len(p), max-len(t.ring))
			t.ring = append(t.ring, p[:k]...)
			p = p[k:]
			t.full = len(t.ring) == max
			continue
		}
		k := copy(t.ring[t.start:], p)
		t.dropped += int64(k)
		p = p[k:]
		t.start = (t.start + k) % max
	}
	return n, nil
}

func (t *TailBuffer) size() int { return len(t.ring) }

// Bytes returns a copy of the bytes kept, oldest first.
func (t *TailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]byte, 0, len(t.ring))
	if !t.full {
		return append(out, t.ring...)
	}
	out = append(out, t.ring[t.start:]...)
	return append(out, t.ring[:t.start]...)
}

// Dropped is how many bytes were written but not kept.
func (t *TailBuffer) Dropped() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// String is the bytes kept, after a line saying how much was cut before
// them, if anything was.
func (t *TailBuffer) String() string {
	kept, cut := t.Bytes(), t.Dropped()
	if cut == 0 {
		return string(kept)
	}
	return fmt.Sprintf("[cvs: %d bytes of output cut; the last %d follow]\n%s", cut, len(kept), kept)
}
