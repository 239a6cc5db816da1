package report

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress draws "label: N of M hosts done (Ts)" on a terminal, rewriting
// one line, once a wait has lasted longer than a second. On anything but a
// terminal it draws nothing.
type Progress struct {
	w        io.Writer
	terminal bool
	label    string
	delay    time.Duration

	mu          sync.Mutex
	done, total int
	start       time.Time
	drawn       bool
	stop        chan struct{}
	wg          sync.WaitGroup
}

// StartProgress starts a progress line for total hosts; terminal says
// whether w is a terminal. Call Stop when the wait is over.
func StartProgress(w io.Writer, terminal bool, label string, total int) *Progress {
	p := &Progress{w: w, terminal: terminal, label: label, delay: time.Second,
		total: total, start: time.Now(), stop: make(chan struct{})}
	if terminal {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

func (p *Progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *Progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.start) < p.delay {
		return
	}
	p.drawn = true
	fmt.Fprintf(p.w, "\r\033[K%s: %d of %d hosts done (%s)", p.label, p.done, p.total, time.Since(p.start).Round(time.Second))
}

// Set records that done of total hosts are finished; it fits
// fleet.Fleet.Progress.
func (p *Progress) Set(done, total int) {
	p.mu.Lock()
	p.done, p.total = done, total
	p.mu.Unlock()
}

// Stop ends the progress line and clears it. It is safe on nil.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
		return
	default:
		close(p.stop)
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// Above clears the line, if drawn, and runs write (which prints another
// line, a log message, to the same terminal) before the line is drawn
// again, so that the two never share a line.
func (p *Progress) Above(write func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	write()
}
