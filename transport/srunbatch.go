package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cvs-tool/cvs/report"
)

// SrunGroup gathers the commands its nodes are asked to run at about the
// same time into one srun: when every node of a fan-out runs the same
// command line (the probe, the lock, a step, exec), the controller starts
// one srun process with one task per node, which Slurm launches through its
// tree of slurmd daemons, instead of one srun per node. Each caller still
// gets its own Result and typed error, and its own output as it arrives.
//
// A command joins a gathering batch when its line and its stdin (forwarded
// or not, its Heartbeat) are the same and its node is not in it yet; the batch starts
// once no command has joined for Window (or MaxWait after the first). A
// batch of one is a plain per-node srun. srun's stdin goes to every task
// (--input=all): closing it is the end-of-file that stops every watchdog,
// which is how a batch is stopped and how the cluster lock, held by one
// batch, is released; a Heartbeat is written there once, for every task. An upload of the same small file to the same path
// is a batch too, whose stdin is the file (maxBatchUpload). Each node's
// result is handed over as soon as its task exits (both its output
// streams end with a mark), not when the batch's slowest node ends.
//
// A node whose task never started in the batch (srun could not place it:
// the node is down, not in the allocation) runs the command again on its
// own, where srun's error for that node alone becomes its typed error; a
// task that started and ended without its exit status is unreachable.
// When the launch fails on a node (its slurmd is gone while the node is
// still allocated), Slurm aborts the whole step about a launch timeout
// later, killing the tasks of the healthy nodes: those whose command may
// run twice (Command.Rerun) run it again in a batch of their own, the
// others are told their command was killed part-way; and the group runs
// every later command of that node on its own, so that it aborts no
// other batch. A node where srun could not start a task on its own is not
// tried again in this invocation: that error is its answer from then on,
// as a failed SSH dial is.
//
// Time limits: the batch is stopped (every task's stdin closed, so every
// watchdog kills its command) once every caller's context has ended; a
// caller whose context ends first gets its timeout at once.
type SrunGroup struct {
	// Bin is the srun executable ("srun" in $PATH when empty).
	Bin string
	// Env is added to srun's environment.
	Env []string
	// Window is how long a batch waits for one more command (10 ms when
	// zero); MaxWait bounds the whole gathering (100 ms when zero).
	Window, MaxWait time.Duration
	// Parallel bounds the per-node sruns running at once (uploads, a
	// batch of one, retries); 0 is no bound. A batch counts as one.
	Parallel int

	slots   chan struct{}
	once    sync.Once
	mu      sync.Mutex
	pending map[string]*srunBatch
	// failed holds the nodes a batch's launch failed on: their commands
	// are not batched any more.
	failed map[string]bool
	// gone holds the nodes where srun could not start a task on its own,
	// with that error: like a failed SSH dial, it is the answer for the
	// rest of the invocation (each try costs Slurm's launch timeout, about
	// 10 s).
	gone map[string]error
	// Batches counts the srun processes started for batches of two or
	// more nodes.
	batches int
	// cohort holds, for a node of a batch that has not asked for another
	// command since, that batch's number (counted in batches): a batch
	// gathering the next command waits for those nodes too (up to
	// MaxWait), as results come back apart but the nodes go on together.
	cohort map[string]uint64
}

// Node returns the node's connection, whose commands the group gathers.
func (g *SrunGroup) Node(host string) *Srun {
	return &Srun{Host: host, Bin: g.Bin, Env: g.Env, group: g}
}

// Batches is how many srun processes ran a command on more than one node.
func (g *SrunGroup) Batches() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.batches
}

type srunBatch struct {
	key     string // batchKey
	members []*srunMember
	nodes   map[string]bool
	joined  chan struct{} // a member joined: wait another Window
	// from holds the batches whose results its members had last: their
	// other nodes are likely to ask for the same command next.
	from map[uint64]bool
}

// has reports whether host is a member already.
func (b *srunBatch) has(host string) bool { return b.nodes[host] }

func (b *srunBatch) add(m *srunMember, from uint64) {
	b.members = append(b.members, m)
	b.nodes[m.node.Host] = true
	if from != 0 {
		b.from[from] = true
	}
}

type srunMember struct {
	node *Srun
	cmd  Command
	// data, when set, is the command's standard input (an upload): every
	// task of a batch reads it; the command runs without the watchdog.
	data []byte
	ctx  context.Context
	done chan srunOutcome // buffered
	// reruns counts the batches aborted under this member (Command.Rerun).
	reruns int
}

// maxBatchUpload is the largest file sent to many nodes as one srun: srun
// sends its standard input to every node itself, so the controller sends
// one copy per node (an image goes through sbcast's tree instead).
const maxBatchUpload = 4 << 20

// input is what the member's command reads on its standard input: data,
// or nothing (nil: the watchdog's end-of-file).
func (m *srunMember) input() io.Reader {
	if m.data == nil {
		return nil
	}
	return bytes.NewReader(m.data)
}

// maxReruns bounds how often one command is run again after aborted
// batches; each abort also takes the failed node out of later batches.
const maxReruns = 2

type srunOutcome struct {
	res Result
	err error
}

func (g *SrunGroup) window() (time.Duration, time.Duration) {
	w, m := g.Window, g.MaxWait
	if w <= 0 {
		w = 10 * time.Millisecond
	}
	if m <= 0 {
		m = 100 * time.Millisecond
	}
	return w, m
}

// run is Srun.Run for a node of the group.
func (g *SrunGroup) run(ctx context.Context, node *Srun, cmd Command) (Result, error) {
	return g.runData(ctx, node, cmd, nil)
}

// runData runs cmd on the node with data on its standard input (none when
// nil), gathered with the same command and data on other nodes.
func (g *SrunGroup) runData(ctx context.Context, node *Srun, cmd Command, data []byte) (Result, error) {
	if err := g.goneErr(node.Host); err != nil {
		return Result{ExitCode: -1}, err
	}
	start := time.Now()
	m := &srunMember{node: node, cmd: cmd, data: data, ctx: ctx, done: make(chan srunOutcome, 1)}
	g.join(m)
	select {
	case o := <-m.done:
		return o.res, o.err
	case <-ctx.Done():
		// As over SSH, return once the command is stopped on the node (a
		// docker run killed part-way may still create its container; the
		// caller's cleanup must look after that): the batch is stopped
		// when every member's context has ended, which is at once when
		// they share it. A member alone in its time limit waits no more
		// than the batch's grace.
		res := Result{}
		select {
		case o := <-m.done:
			res = o.res
		case <-time.After(killGrace + time.Second):
		}
		res.ExitCode, res.Duration = -1, time.Since(start)
		return res, stopped(ctx, node.Host, cmd, start)
	}
}

func (g *SrunGroup) join(m *srunMember) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[string]*srunBatch{}
	}
	from := g.cohort[m.node.Host]
	delete(g.cohort, m.node.Host)
	if g.failed[m.node.Host] {
		go g.solo(m) // its launch failed in a batch: it would abort another
		return
	}
	key := batchKey(m.cmd, m.data)
	if b := g.pending[key]; b != nil {
		if b.has(m.node.Host) {
			go g.solo(m) // the node is in this batch already: a batch of its own
			return
		}
		b.add(m, from)
		select {
		case b.joined <- struct{}{}:
		default:
		}
		return
	}
	b := &srunBatch{key: key, nodes: map[string]bool{}, from: map[uint64]bool{}, joined: make(chan struct{}, 1)}
	b.add(m, from)
	g.pending[key] = b
	go g.gather(b)
}

// batchKey: commands run together when their line and their standard
// input (forwarded or not, its heartbeat, or the data they read) are the
// same.
func batchKey(c Command, data []byte) string {
	if data != nil {
		return fmt.Sprintf("data %x\x00%s", sha256.Sum256(data), c.Line)
	}
	return fmt.Sprintf("%t\x00%s\x00%s", forwardsStdin(c), c.Heartbeat, c.Line)
}

// gather waits for the batch to fill, then runs it.
func (g *SrunGroup) gather(b *srunBatch) {
	window, maxWait := g.window()
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	idle := time.NewTimer(window)
	defer idle.Stop()
wait:
	for {
		select {
		case <-b.joined:
			idle.Reset(window)
		case <-idle.C:
			if g.expecting(b) {
				idle.Reset(window)
				continue
			}
			break wait
		case <-deadline.C:
			break wait
		}
	}
	g.mu.Lock()
	delete(g.pending, b.key)
	members := b.members
	if len(members) > 1 {
		g.batches++
		if g.cohort == nil {
			g.cohort = map[string]uint64{}
		}
		for _, m := range members {
			g.cohort[m.node.Host] = uint64(g.batches)
		}
	}
	g.mu.Unlock()
	if len(members) == 1 {
		g.solo(members[0])
		return
	}
	g.runBatch(members)
}

// expecting reports whether a node of a batch b's members came from has
// not asked for its next command yet (it may still be running that
// batch's command).
func (g *SrunGroup) expecting(b *srunBatch) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for node, from := range g.cohort {
		if b.from[from] && !b.has(node) {
			return true
		}
	}
	return false
}

func (g *SrunGroup) solo(m *srunMember) {
	if !forwardsStdin(m.cmd) { // held open for the run (the lock): no place
		release, err := g.slot(m.ctx, m.node.Host, m.cmd)
		if err != nil {
			m.done <- srunOutcome{Result{ExitCode: -1}, err}
			return
		}
		defer release()
	}
	res, err := m.node.run(m.ctx, m.cmd, m.input())
	g.noteGone(m.node.Host, err)
	m.done <- srunOutcome{res, err}
}

// nodeUnreachable is srun's word for a node it cannot reach (its slurmd
// gone, the node down or not in the allocation), as opposed to the
// controller's passing trouble (a timeout creating the step).
var nodeUnreachable = regexp.MustCompile(`Communication connection failure|failed on node|Requested node configuration is not available|Invalid node name`)

// noteGone remembers a node where srun could not start a task because the
// node cannot be reached.
func (g *SrunGroup) noteGone(host string, err error) {
	var he *HostError
	if !NeverReached(err) || !errors.As(err, &he) || !nodeUnreachable.MatchString(he.Detail) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gone == nil {
		g.gone = map[string]error{}
	}
	g.gone[host] = he
}

// goneErr is the error of a node where srun could not start a task, or
// nil.
func (g *SrunGroup) goneErr(host string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gone[host]
}

// slot waits for room for one more per-node srun (Parallel), at most
// until ctx ends: then the command was stopped before it started.
func (g *SrunGroup) slot(ctx context.Context, host string, cmd Command) (release func(), err error) {
	g.once.Do(func() {
		if g.Parallel > 0 {
			g.slots = make(chan struct{}, g.Parallel)
		}
	})
	if g.slots == nil {
		return func() {}, nil
	}
	start := time.Now()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-ctx.Done():
		return nil, stopped(ctx, host, cmd, start)
	}
}

// batchContext ends when every member's context has ended.
func batchContext(members []*srunMember) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	left := len(members)
	stops := make([]func() bool, 0, len(members))
	for _, m := range members {
		stops = append(stops, context.AfterFunc(m.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if left--; left == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// The lines a batch task writes around its command on stdout:
// "<token> start <node>" first, "<token> exit <node> <status>" last.
var labelled = regexp.MustCompile(`^ *([0-9]+): (.*)$`)

// batchScript runs $2 under the watchdog $1 between the marks, which
// carry the batch's token ($CVS_BATCH_TOKEN, taken out of the
// command's environment): the start on stdout, the exit status on stdout
// and on stderr (each stream's mark says that stream of the task is
// complete). Each exit mark is a line of its own: the newline before it
// ends the command's last line, or is an empty line after it; the
// demultiplexer does not count it as the command's (taskStream).
const batchScript = `t=$` + tokenVar + `; unset ` + tokenVar + `; printf '%s start %s\n' "$t" "$SLURMD_NODENAME"; sh -c "$1" cvs "$2"; s=$?; ` +
	`printf '\n%s exit %s %d\n' "$t" "$SLURMD_NODENAME" $s; printf '\n%s exit %s %d\n' "$t" "$SLURMD_NODENAME" $s >&2`

// tokenVar is the environment variable that brings a batch's token to its
// tasks.
const tokenVar = "CVS_BATCH_TOKEN"

// batchRunner is the script that runs a batch's command: under the
// watchdog, or, for a command that reads data or heartbeats, plainly (the
// watchdog would read them too).
func batchRunner(m *srunMember) string {
	if m.data != nil || m.cmd.Heartbeat > 0 {
		return `exec sh -c "$1"`
	}
	return watchdog(forwardsStdin(m.cmd))
}

// runBatch runs one srun with a task on every member's node and hands each
// member its result.
func (g *SrunGroup) runBatch(members []*srunMember) {
	start := time.Now()
	token := batchToken()
	demux, tasks := newSrunDemux(token, members, start)
	nodes := make([]string, len(members))
	for i, m := range members {
		nodes[i] = m.node.Host
	}
	sort.Strings(nodes)
	bin := members[0].node.bin()
	argv := []string{bin, "--nodelist=" + strings.Join(nodes, ","), fmt.Sprintf("--nodes=%d", len(nodes)),
		fmt.Sprintf("--ntasks=%d", len(nodes)), "--ntasks-per-node=1", "--overlap", "--quiet", "--kill-on-bad-exit=0",
		"--input=all", "--label", "--export=" + tokenVar, "/bin/sh", "-c", nodeEnv + batchScript, "cvs", batchRunner(members[0]), members[0].cmd.Line}
	c := exec.Command(argv[0], argv[1:]...)
	// The token in srun's environment, which srun gives the tasks (with
	// the SLURM_* variables, and nothing else of ours): not in a command
	// line, which anyone on a node may read (a step in a pid = "host"
	// container could print a mark), while a process's environment only
	// its user may.
	c.Env = append(append(os.Environ(), members[0].node.Env...), tokenVar+"="+token)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, errR, stdin, err := pipes(c)
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		for _, m := range members {
			m.done <- srunOutcome{Result{ExitCode: -1}, &HostError{Host: m.node.Host, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("starting srun: %v (is Slurm's client installed?)", err)}}
		}
		return
	}
	if data := members[0].data; data != nil {
		go func() {
			stdin.Write(data)
			stdin.Close()
		}()
	} else if hb := members[0].cmd.Heartbeat; hb > 0 {
		// Once, to srun's stdin: srun gives it to every task.
		stop := make(chan struct{})
		defer close(stop)
		go writeBeats(stdin, hb, stop)
	}
	var read sync.WaitGroup
	read.Add(2)
	go func() { defer read.Done(); demux.stdout(outR) }()
	go func() { defer read.Done(); demux.stderr(errR) }()
	waitc := make(chan error, 1)
	go func() { read.Wait(); waitc <- c.Wait() }()
	ctx, cancel := batchContext(members)
	defer cancel()
	var werr error
	select {
	case werr = <-waitc:
	case <-ctx.Done():
		if members[0].data == nil {
			stdin.Close() // every task's watchdog kills its command
		}
		select {
		case werr = <-waitc:
		case <-time.After(killGrace):
			c.Process.Signal(os.Interrupt)
			c.Process.Signal(os.Interrupt)
			werr = <-waitc
		}
	}
	stdin.Close()
	srunErr := report.LastLine(demux.srunOwn.String())
	for _, l := range strings.Split(demux.srunOwn.String(), "\n") {
		if launchFailed.MatchString(l) {
			srunErr = l // the cause, not "Force Terminated"
			break
		}
	}
	if srunErr == "" && werr != nil {
		srunErr = werr.Error()
	}
	demux.mu.Lock()
	defer demux.mu.Unlock()
	if len(demux.failedOn) > 0 {
		g.mu.Lock()
		if g.failed == nil {
			g.failed = map[string]bool{}
		}
		for _, n := range demux.failedOn {
			g.failed[n] = true
		}
		g.mu.Unlock()
	}
	for _, t := range tasks {
		m := t.member
		if !t.delivered {
			t.stop()
		}
		switch {
		case t.delivered:
		case t.exited:
			demux.deliver(t)
		case m.ctx.Err() != nil:
			// Stopped at its time limit (or interrupted) with the batch.
			m.done <- srunOutcome{t.result(-1, start), stopped(m.ctx, m.node.Host, m.cmd, start)}
		case !t.started:
			// Never started here: srun's error for this node alone (or
			// the command, if the node is fine) is the answer.
			go g.solo(m)
		case len(demux.failedOn) > 0 && m.cmd.Rerun && m.reruns < maxReruns:
			// Killed by the abort below, but safe to run again: in a
			// batch without the failed nodes.
			m.reruns++
			g.join(m)
		case len(demux.failedOn) > 0:
			// Slurm aborts the whole step when the launch fails on one
			// node: the command was killed here, part-way.
			m.done <- srunOutcome{t.result(-1, start), &HostError{Host: m.node.Host, Kind: KindSSH, Err: werr,
				Detail: fmt.Sprintf("srun aborted the step, and the command was killed here part-way: the task launch failed on %s (%s)", strings.Join(demux.failedOn, ", "), srunErr)}}
		default:
			m.done <- srunOutcome{t.result(-1, start), &HostError{Host: m.node.Host, Kind: KindUnreachable, Err: werr,
				Detail: fmt.Sprintf("srun: the task on %s ended without its exit status (%s)", m.node.Host, srunErr)}}
		}
	}
}

func pipes(c *exec.Cmd) (stdout, stderr io.Reader, stdin io.WriteCloser, err error) {
	if stdout, err = c.StdoutPipe(); err != nil {
		return
	}
	if stderr, err = c.StderrPipe(); err != nil {
		return
	}
	stdin, err = c.StdinPipe()
	return
}

func batchToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "@@cvs-" + hex.EncodeToString(b)
}

// srunTask is one node's task of a batch.
type srunTask struct {
	member *srunMember
	captured
	started, exited bool
	status          int
	errDone         bool // the exit mark came on stderr too
	delivered       bool // the member has its outcome
	// out and err follow the task's two streams as srun cuts them.
	out, err taskStream
}

// srunMsgMax is the most output of one task srun carries in a message
// (slurmstepd's MAX_MSG_LEN): a longer line arrives cut in pieces of
// exactly this size, each printed by --label as a line of its own.
const srunMsgMax = 1024

// streamHold is how long a line's newline is held back from the
// command's Stdout or Stderr writer: it may be the one the batch script
// prints before its exit mark (then it is not the command's), and that
// mark comes right after the line when it is.
const streamHold = 100 * time.Millisecond

// taskStream is one output stream of a task: a line from srun is a piece
// of the task's line when it is srunMsgMax long (cont), else the end of
// one. The newline that ends a line is given to the Result and the
// command's writer only when another line follows: the last one, before
// the exit mark, is the batch script's (the writer gets it after
// streamHold anyway, so that a line shows as soon as it came).
type taskStream struct {
	buf  *report.TailBuffer
	w    io.Writer
	cont bool // the last piece was cut: the next one goes on its line
	nl   bool // buf's newline held back
	wnl  bool // w's newline held back
	tick *time.Timer
}

// piece takes one line srun printed for the stream. Called with mu held.
func (s *taskStream) piece(mu *sync.Mutex, text string) {
	if s.nl {
		s.buf.Write([]byte{'\n'})
		s.nl = false
	}
	s.buf.Write([]byte(text))
	if s.w != nil {
		out := text
		if s.wnl {
			s.tick.Stop()
			s.wnl, out = false, "\n"+text
		}
		s.w.Write([]byte(out))
	}
	if s.cont = len(text) == srunMsgMax; s.cont {
		return
	}
	s.nl = true
	if s.w == nil {
		return
	}
	s.wnl = true
	if s.tick != nil {
		s.tick.Reset(streamHold)
		return
	}
	s.tick = time.AfterFunc(streamHold, func() {
		mu.Lock()
		defer mu.Unlock()
		if s.wnl {
			s.w.Write([]byte{'\n'})
			s.wnl = false
		}
	})
}

// end takes the stream's exit mark: the newline held back is the batch
// script's. Called with mu held.
func (s *taskStream) end() {
	s.nl, s.wnl = false, false
	if s.tick != nil {
		s.tick.Stop()
	}
}

// srunDemux splits srun --label's output by task: a task's rank is tied to
// its node by the task's start mark on stdout; stderr lines of a rank not
// tied yet wait for it.
type srunDemux struct {
	token   string
	byNode  map[string]*srunTask
	mu      sync.Mutex
	byRank  map[int]*srunTask
	early   map[int][]string // stderr lines of ranks not tied yet
	srunOwn strings.Builder  // srun's own messages
	start   time.Time
	// failedOn names the nodes srun could not launch a task on ("Task
	// launch for StepId=... failed on node N: ...").
	failedOn []string
}

var launchFailed = regexp.MustCompile(`failed on node ([^ :]+):`)

// newSrunDemux returns the demultiplexer of a batch whose marks carry
// token, and the members' tasks in their order.
func newSrunDemux(token string, members []*srunMember, start time.Time) (*srunDemux, []*srunTask) {
	d := &srunDemux{token: token, byNode: map[string]*srunTask{}, byRank: map[int]*srunTask{}, early: map[int][]string{}, start: start}
	tasks := make([]*srunTask, len(members))
	for i, m := range members {
		t := &srunTask{member: m, captured: newCaptured()}
		t.out, t.err = taskStream{buf: t.stdout, w: m.cmd.Stdout}, taskStream{buf: t.stderr, w: m.cmd.Stderr}
		tasks[i], d.byNode[m.node.Host] = t, t
	}
	return d, tasks
}

// srunLines splits srun's output at each newline; unlike bufio.ScanLines
// it keeps a carriage return before it, which is the task's.
func srunLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (d *srunDemux) stdout(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sc.Split(srunLines)
	for sc.Scan() {
		rank, text, ok := label(sc.Text())
		if !ok {
			continue
		}
		d.mu.Lock()
		d.stdoutLine(rank, text)
		d.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// mark returns the fields of a task's mark, or nil: a mark is a line of
// its own (the batch script prints a newline before it) that starts with
// the batch's token.
func (d *srunDemux) mark(s *taskStream, text string) []string {
	if (s != nil && s.cont) || !strings.HasPrefix(text, d.token+" ") {
		return nil
	}
	return strings.Fields(text[len(d.token)+1:])
}

// stdoutLine takes one line of a task's stdout: its start mark, output,
// or its exit mark. Called with d.mu held.
func (d *srunDemux) stdoutLine(rank int, text string) {
	t := d.byRank[rank]
	if t == nil {
		f := d.mark(nil, text)
		if len(f) != 2 || f[0] != "start" || d.byNode[f[1]] == nil || d.byNode[f[1]].started {
			return
		}
		t = d.byNode[f[1]]
		t.started = true
		d.byRank[rank] = t
		for _, l := range d.early[rank] {
			d.stderrLine(t, l)
		}
		delete(d.early, rank)
		return
	}
	if t.exited {
		return
	}
	f := d.mark(&t.out, text)
	if f == nil || len(f) != 3 || f[0] != "exit" {
		t.out.piece(&d.mu, text)
		return
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.out.piece(&d.mu, text)
		return
	}
	t.out.end()
	t.exited, t.status = true, n
	if t.errDone {
		d.deliver(t)
	}
}

func (d *srunDemux) stderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sc.Split(srunLines)
	for sc.Scan() {
		rank, text, ok := label(sc.Text())
		d.mu.Lock()
		switch t := d.byRank[rank]; {
		case !ok:
			d.srunOwn.WriteString(sc.Text() + "\n")
			if m := launchFailed.FindStringSubmatch(sc.Text()); m != nil {
				d.failedOn = append(d.failedOn, m[1])
			}
		case t != nil:
			d.stderrLine(t, text)
		default:
			d.early[rank] = append(d.early[rank], text)
		}
		d.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// stderrLine takes one line of a task's stderr: output, or its exit mark.
// Called with d.mu held.
func (d *srunDemux) stderrLine(t *srunTask, text string) {
	if t.errDone {
		return
	}
	if f := d.mark(&t.err, text); len(f) != 3 || f[0] != "exit" {
		t.err.piece(&d.mu, text)
		return
	}
	t.err.end()
	t.errDone = true
	if t.exited {
		d.deliver(t)
	}
}

// stop ends the streams of a task that gave no exit mark: the newlines
// held back are the command's after all. Called with d.mu held.
func (t *srunTask) stop() {
	for _, s := range []*taskStream{&t.out, &t.err} {
		if s.nl {
			s.buf.Write([]byte{'\n'})
		}
		if s.wnl {
			s.w.Write([]byte{'\n'})
		}
		s.end()
	}
}

// deliver hands a task that exited its outcome, as soon as both its
// streams are complete: a node's result does not wait for the batch's
// slowest node (nor, for the lock, for the others' release). Called with
// d.mu held.
func (d *srunDemux) deliver(t *srunTask) {
	if t.delivered {
		return
	}
	t.delivered = true
	m := t.member
	res := t.result(t.status, d.start)
	if t.status != 0 {
		m.done <- srunOutcome{res, &ExitError{Host: m.node.Host, Cmd: m.cmd.name(), Code: t.status, StderrTail: report.Tail(string(res.Stderr), stderrTailLines)}}
		return
	}
	m.done <- srunOutcome{res, nil}
}

// label splits a line of srun --label's output into the task's rank and
// the task's line.
func label(line string) (int, string, bool) {
	m := labelled.FindStringSubmatch(line)
	if m == nil {
		return 0, "", false
	}
	n, err := strconv.Atoi(m[1])
	return n, m[2], err == nil
}
