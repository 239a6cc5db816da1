package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/internal/fakeslurm"
)

func newFakeGroup(t *testing.T) (*SrunGroup, string) {
	t.Helper()
	bin, logf := fakeslurm.Srun(t)
	return &SrunGroup{Bin: bin, Env: []string{"SRUN_LOG=" + logf}}, logf
}

// srunCalls is the node lists srun was started with, one per call.
func srunCalls(t *testing.T, logf string) []string {
	b, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

type nodeRun struct {
	res    Result
	err    error
	stdout strings.Builder
}

// runOnAll runs line on every node at once, as a fan-out does.
func runOnAll(ctx context.Context, g *SrunGroup, nodes []string, line string) map[string]*nodeRun {
	return runCommandOnAll(ctx, g, nodes, Command{Line: line})
}

// runCommandOnAll runs cmd on every node at once, each with its own
// Stdout.
func runCommandOnAll(ctx context.Context, g *SrunGroup, nodes []string, cmd Command) map[string]*nodeRun {
	out := map[string]*nodeRun{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range nodes {
		r := &nodeRun{}
		out[n] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w syncWriter
			c := cmd
			c.Stdout = &w
			res, err := g.Node(n).Run(ctx, c)
			mu.Lock()
			r.res, r.err = res, err
			r.stdout.WriteString(w.String())
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// The same command on three nodes is one srun; each node gets its own
// output, exit status and typed error.
func TestSrunGroupOneSrunForTheSameCommand(t *testing.T) {
	g, logf := newFakeGroup(t)
	nodes := []string{"n1", "n2", "n3"}
	got := runOnAll(context.Background(), g, nodes,
		`echo "out $SLURMD_NODENAME"; echo "err $SLURMD_NODENAME" >&2; printf 'no newline'; [ "$SLURMD_NODENAME" != n2 ] || exit 3`)
	if calls := srunCalls(t, logf); len(calls) != 1 || calls[0] != "n1,n2,n3" || g.Batches() != 1 {
		t.Fatalf("srun calls %q, batches %d: want one for n1,n2,n3", calls, g.Batches())
	}
	for _, n := range nodes {
		r := got[n]
		want := "out " + n + "\nno newline"
		if string(r.res.Stdout) != want || r.stdout.String() != want || string(r.res.Stderr) != "err "+n+"\n" {
			t.Errorf("%s: stdout %q (streamed %q), stderr %q", n, r.res.Stdout, r.stdout.String(), r.res.Stderr)
		}
		var ee *ExitError
		switch {
		case n == "n2" && (!errors.As(r.err, &ee) || ee.Code != 3 || ee.Host != "n2" || r.res.ExitCode != 3 || !strings.Contains(ee.StderrTail, "err n2")):
			t.Errorf("n2: %+v %v", r.res, r.err)
		case n != "n2" && (r.err != nil || r.res.ExitCode != 0):
			t.Errorf("%s: %v", n, r.err)
		}
	}
}

// A step Slurm cannot create on every node runs again node by node: the
// node it cannot use is unreachable, the others run the command.
func TestSrunGroupNodeDownInABatch(t *testing.T) {
	g, logf := newFakeGroup(t)
	got := runOnAll(context.Background(), g, []string{"n1", "down", "n3"}, `echo "hi $SLURMD_NODENAME"`)
	if ErrorKind(got["down"].err) != KindUnreachable || !strings.Contains(got["down"].err.Error(), "Requested node configuration") {
		t.Errorf("down: %v (kind %s)", got["down"].err, ErrorKind(got["down"].err))
	}
	for _, n := range []string{"n1", "n3"} {
		if got[n].err != nil || string(got[n].res.Stdout) != "hi "+n+"\n" {
			t.Errorf("%s: %q %v", n, got[n].res.Stdout, got[n].err)
		}
	}
	if calls := srunCalls(t, logf); len(calls) != 4 {
		t.Errorf("srun calls %q: want the batch, then one per node", calls)
	}
}

// At the time limit every task of the batch is killed on its node, and
// every caller gets its timeout.
func TestSrunGroupTimeoutKillsEveryTask(t *testing.T) {
	g, _ := newFakeGroup(t)
	marker := filepath.Join(t.TempDir(), "alive")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	line := fmt.Sprintf("sleep 30; touch %s-$SLURMD_NODENAME", marker)
	got := runOnAll(ctx, g, []string{"n1", "n2"}, line)
	for n, r := range got {
		var te *TimeoutError
		if !errors.As(r.err, &te) || te.Host != n {
			t.Errorf("%s: %v", n, r.err)
		}
	}
	// No wait: Run returns once the command is stopped on the node, as
	// over SSH (a teardown right after must not race a command still
	// running): srun has ended too.
	if out, _ := exec.Command("pgrep", "-f", g.Bin).Output(); len(out) > 0 {
		t.Errorf("srun still runs after Run returned: pids %q", out)
	}
	if res, _ := (&Srun{Host: "n1", Bin: g.Bin, Env: g.Env}).Run(context.Background(), Command{Line: "pgrep -fc '[s]leep 30; touch " + marker + "' || true"}); strings.TrimSpace(string(res.Stdout)) != "0" {
		t.Errorf("tasks still run after the timeout: %q", res.Stdout)
	}
}

// Different commands, or a node already in the batch, make batches of
// their own.
func TestSrunGroupKeepsCommandsApart(t *testing.T) {
	g, logf := newFakeGroup(t)
	var wg sync.WaitGroup
	results := make([]string, 3)
	for i, c := range []struct{ node, line string }{{"n1", "echo a"}, {"n2", "echo b"}, {"n1", "echo a"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := g.Node(c.node).Run(context.Background(), Command{Line: c.line})
			results[i] = fmt.Sprintf("%s %v", strings.TrimSpace(string(res.Stdout)), err)
		}()
	}
	wg.Wait()
	if results[0] != "a <nil>" || results[1] != "b <nil>" || results[2] != "a <nil>" {
		t.Errorf("results %q", results)
	}
	if calls := srunCalls(t, logf); len(calls) != 3 || g.Batches() != 0 {
		t.Errorf("srun calls %q, batches %d: want three sruns of one node", calls, g.Batches())
	}
}

// A node whose task cannot be launched (its slurmd gone) makes Slurm abort
// the whole step: that node is unreachable (tried alone), and the nodes
// whose command was killed part-way say so, naming the node that failed.
func TestSrunGroupStepAbortedByAnotherNode(t *testing.T) {
	g, logf := newFakeGroup(t)
	defer func() { t.Logf("srun calls: %q", srunCalls(t, logf)) }()
	got := runOnAll(context.Background(), g, []string{"n1", "dies", "n3"}, `echo "hi $SLURMD_NODENAME"; sleep 5; echo done`)
	if ErrorKind(got["dies"].err) != KindUnreachable || !strings.Contains(got["dies"].err.Error(), "failed on node dies") {
		t.Errorf("dies: %v (kind %s)", got["dies"].err, ErrorKind(got["dies"].err))
	}
	for _, n := range []string{"n1", "n3"} {
		r := got[n]
		if ErrorKind(r.err) != KindSSH || !strings.Contains(r.err.Error(), "killed here part-way") || !strings.Contains(r.err.Error(), "failed on dies") ||
			string(r.res.Stdout) != "hi "+n+"\n" {
			t.Errorf("%s: %q %v", n, r.res.Stdout, r.err)
		}
	}
}

// A command that may run twice (the probe, the lock) is run again on the
// healthy nodes when another node's failed launch aborted the batch, so
// that they get the result they would get over SSH; the node whose launch
// failed is tried on its own, from then on, for every command of the
// group, so that it aborts no other batch.
func TestSrunGroupRerunsWhatMayRunTwice(t *testing.T) {
	g, logf := newFakeGroup(t)
	nodes := []string{"n1", "dies", "n3"}
	got := runCommandOnAll(context.Background(), g, nodes, Command{Line: `echo "hi $SLURMD_NODENAME"; sleep 2; echo done`, Rerun: true})
	if ErrorKind(got["dies"].err) != KindUnreachable || !strings.Contains(got["dies"].err.Error(), "failed on node dies") {
		t.Errorf("dies: %v (kind %s)", got["dies"].err, ErrorKind(got["dies"].err))
	}
	for _, n := range []string{"n1", "n3"} {
		if r := got[n]; r.err != nil || string(r.res.Stdout) != "hi "+n+"\ndone\n" {
			t.Errorf("%s: %q %v, want its second run's output and no error", n, r.res.Stdout, r.err)
		}
	}
	// Commands that must not run twice are still reported, not rerun; but
	// the group no longer puts "dies" in a batch.
	got = runOnAll(context.Background(), g, nodes, `echo "again $SLURMD_NODENAME"; sleep 2`)
	for _, n := range []string{"n1", "n3"} {
		if r := got[n]; r.err != nil || string(r.res.Stdout) != "again "+n+"\n" {
			t.Errorf("%s, second command: %q %v", n, r.res.Stdout, r.err)
		}
	}
	// As over SSH a host that could not be connected to is not dialled
	// again, a node where srun could not start a task is not tried again
	// in this invocation (each try costs Slurm's launch timeout).
	if err := got["dies"].err; ErrorKind(err) != KindUnreachable || !strings.Contains(err.Error(), "failed on node dies") {
		t.Errorf("dies, second command: %v", err)
	}
	calls := srunCalls(t, logf)
	want := map[string]int{"dies,n1,n3": 1, "dies": 1, "n1,n3": 2}
	count := map[string]int{}
	for _, c := range calls {
		count[c]++
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("srun calls %q, want %v of each", calls, want)
	}
}

// A node's result is handed over as soon as its task exits, not when the
// batch's slowest node ends; commands that forward stdin (the lock, steps
// in containers) are batched too and all stop when their context ends.
func TestSrunGroupEarlyResultsAndForwardedStdin(t *testing.T) {
	g, logf := newFakeGroup(t)
	type done struct {
		node string
		at   time.Duration
		out  string
		err  error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	results := make(chan done, 3)
	for _, n := range []string{"n1", "n2", "n3"} {
		go func() {
			var w syncWriter
			// n2 is busy (exits 75 at once); the others hold until
			// their stdin ends, as the cluster lock does.
			res, err := g.Node(n).Run(ctx, Command{Line: `echo "ready $SLURMD_NODENAME"; [ "$SLURMD_NODENAME" = n2 ] && exit 75; exec cat >/dev/null`, Stdout: &w, ForwardStdin: true})
			results <- done{n, time.Since(start), string(res.Stdout), err}
		}()
	}
	first := <-results
	var ee *ExitError
	if first.node != "n2" || !errors.As(first.err, &ee) || ee.Code != 75 || first.out != "ready n2\n" {
		t.Fatalf("first result: %+v, want n2 exiting 75 while the others hold", first)
	}
	select {
	case r := <-results:
		t.Fatalf("%s ended while its stdin is open: %+v", r.node, r)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	for range 2 {
		r := <-results
		if !errors.Is(r.err, context.Canceled) || r.out != "ready "+r.node+"\n" {
			t.Errorf("%s after cancel: %+v", r.node, r)
		}
	}
	if calls := srunCalls(t, logf); len(calls) != 1 {
		t.Errorf("srun calls %q: want one batch", calls)
	}
}

// The same small file to the same path on many nodes (a step's script, an
// environment file) is one srun whose standard input every task writes to
// the file; a node whose launch fails is sent it on its own, and says so.
func TestSrunGroupOneUploadForTheSameFile(t *testing.T) {
	g, logf := newFakeGroup(t)
	dir := t.TempDir()
	// The fake's nodes share this machine: the same path on each, as the
	// real nodes have.
	dst := filepath.Join(dir, "f")
	upload := func(nodes ...string) []error {
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = g.Node(n).Upload(context.Background(), dst, strings.NewReader("the same script\n"), 0o640)
			}()
		}
		wg.Wait()
		return errs
	}
	for i, err := range upload("n1", "n2", "n3") {
		if err != nil {
			t.Errorf("n%d: %v", i+1, err)
		}
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("stat: %v %v", err, st)
	}
	if b, _ := os.ReadFile(dst); string(b) != "the same script\n" {
		t.Errorf("content %q", b)
	}
	if calls := srunCalls(t, logf); fmt.Sprint(calls) != "[n1,n2,n3]" {
		t.Errorf("srun calls %q, want one", calls)
	}
	os.Remove(dst)
	errs := upload("n1", "dies")
	if errs[0] != nil || ErrorKind(errs[1]) != KindUnreachable || !strings.Contains(errs[1].Error(), "failed on node dies") {
		t.Errorf("n1: %v; dies: %v, want it unreachable", errs[0], errs[1])
	}
	if calls := srunCalls(t, logf); fmt.Sprint(calls) != "[n1,n2,n3 dies,n1 dies]" {
		t.Errorf("srun calls %q", calls)
	}
}

// Only a node srun could not reach is remembered as gone; a controller's
// passing trouble (a step that could not be created for a timeout) is
// that command's error, and the node is tried again next time.
func TestSrunGroupRemembersOnlyNodesThatCannotBeReached(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		gone bool
	}{
		{"srun: error: Application launch failed: Communication connection failure", true},
		{"srun: error: Task launch for StepId=7.0 failed on node n1: Communication connection failure", true},
		{"srun: error: Unable to create step for job 7: Requested node configuration is not available", true},
		{"srun: error: Unable to create step for job 7: Socket timed out on send/recv operation", false},
		{"srun: error: slurm_receive_msg: Zero Bytes were transmitted or received", false},
	} {
		g := &SrunGroup{}
		g.noteGone("n1", &HostError{Host: "n1", Kind: KindUnreachable, Detail: tc.msg})
		if got := g.goneErr("n1") != nil; got != tc.gone {
			t.Errorf("%q: remembered %v, want %v", tc.msg, got, tc.gone)
		}
	}
}

// A command held open for the whole run (the cluster lock forwards its
// stdin) does not take one of the Parallel places, which bound commands
// that end; and a command waiting for a place gives up at its time limit.
func TestSrunGroupHeldCommandsTakeNoPlace(t *testing.T) {
	g, _ := newFakeGroup(t)
	g.Parallel = 1
	hold, release := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, err := g.Node("a").Run(hold, Command{Line: "echo held; sleep 30", ForwardStdin: true})
		held <- err
	}()
	time.Sleep(300 * time.Millisecond) // the held command runs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := g.Node("b").Run(ctx, Command{Line: "echo hi"})
	if err != nil || string(res.Stdout) != "hi\n" {
		t.Errorf("b, beside a held command: %q %v", res.Stdout, err)
	}
	release()
	<-held
}

// Nodes whose results of one batch come back apart (each gets its own as
// soon as its task ends) still run their next command as one batch: a
// gathering batch waits, up to MaxWait, for the other nodes of the batch
// its members came from.
func TestSrunGroupKeepsABatchTogetherAcrossCommands(t *testing.T) {
	g, logf := newFakeGroup(t)
	// A loaded machine (a CI run, -race) can take more than the default
	// 100 ms between n1's result and n3's next command: the batch then
	// gathered without n3 (seen once). The promise is "up to MaxWait".
	// and the three first commands, started at once, must gather in one
	// Window however slowly their goroutines get going.
	g.Window, g.MaxWait = 100*time.Millisecond, 5*time.Second
	nodes := []string{"n1", "n2", "n3"}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			// n2 and n3 end 0.3 and 0.6 s after n1: more than Window.
			if _, err := g.Node(n).Run(ctx, Command{Line: `case $SLURMD_NODENAME in n2) sleep 0.3;; n3) sleep 0.6;; esac`}); err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = g.Node(n).Run(ctx, Command{Line: "echo next"})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", nodes[i], err)
		}
	}
	if calls := srunCalls(t, logf); fmt.Sprint(calls) != "[n1,n2,n3 n1,n2,n3]" {
		t.Errorf("srun calls %q, want two batches", calls)
	}
}

// srun carries a task's output in messages of at most 1 KiB and prints
// each as a line: a line longer than that arrives cut in pieces. The
// pieces are put together again, the exit marks are found wherever the
// cut falls, and the output is the command's own (no newline added).
func TestSrunGroupOutputCutInMessages(t *testing.T) {
	for _, n := range []int{1000, 1020, 1023, 1024, 1030, 2048, 3000} {
		for _, end := range []string{"", `\n`} {
			t.Run(fmt.Sprintf("%d%s", n, end), func(t *testing.T) {
				g, _ := newFakeGroup(t)
				line := fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x; printf '%s'; head -c %d /dev/zero | tr '\0' y >&2`, n, end, n)
				got := runOnAll(context.Background(), g, []string{"n1", "n2"}, line)
				want := strings.Repeat("x", n) + strings.ReplaceAll(end, `\n`, "\n")
				for node, r := range got {
					if r.err != nil || string(r.res.Stdout) != want || r.stdout.String() != want || string(r.res.Stderr) != strings.Repeat("y", n) {
						t.Errorf("%s: err %v, stdout %d bytes (streamed %d), stderr %d bytes; want %d, %d", node, r.err, len(r.res.Stdout), r.stdout.Len(), len(r.res.Stderr), len(want), n)
					}
				}
			})
		}
	}
}

// The controller's environment stays here: srun gives the tasks none of
// it (an operator's DOCKER_HOST would redirect every node's docker), only
// a clean one of the node's own (PATH, HOME).
func TestSrunGroupTasksGetNoControllerEnvironment(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
	g, _ := newFakeGroup(t)
	line := `env; echo "home=$HOME"; command -v sh`
	check := func(how, node, out string) {
		if strings.Contains(out, "DOCKER_HOST") || strings.Contains(out, "SRUN_LOG") || strings.Contains(out, "CVS_BATCH_TOKEN") {
			t.Errorf("%s %s: the controller's environment reached the task:\n%s", how, node, out)
		}
		if !strings.Contains(out, "\nPATH=/") || strings.Contains(out, "home=\n") || !strings.Contains(out, "/sh\n") {
			t.Errorf("%s %s: no PATH or HOME of its own:\n%s", how, node, out)
		}
	}
	for n, r := range runOnAll(context.Background(), g, []string{"n1", "n2"}, line) {
		if r.err != nil {
			t.Fatalf("%s: %v", n, r.err)
		}
		check("batch", n, "\n"+string(r.res.Stdout))
	}
	res, err := g.Node("n3").Run(context.Background(), Command{Line: line})
	if err != nil {
		t.Fatal(err)
	}
	check("alone", "n3", "\n"+string(res.Stdout))
}

// The batch's token (whoever prints it can fake an exit status) is in
// no process's command line, which anyone on the node may read in /proc:
// not srun's, not the task's.
func TestSrunGroupTokenNotInAnyCommandLine(t *testing.T) {
	g, _ := newFakeGroup(t)
	// Every ancestor's command line, up to this test.
	line := `p=$$; while [ "$p" -gt 1 ]; do tr '\0' ' ' </proc/$p/cmdline; echo; p=$(cut -d' ' -f4 /proc/$p/stat); done`
	for n, r := range runOnAll(context.Background(), g, []string{"n1", "n2"}, line) {
		if r.err != nil || !strings.Contains(string(r.res.Stdout), "--nodelist=n1,n2") {
			t.Fatalf("%s: %v: no srun among its ancestors:\n%s", n, r.err, r.res.Stdout)
		}
		if strings.Contains(string(r.res.Stdout), "@@cvs-") {
			t.Errorf("%s: the token is in a command line:\n%s", n, r.res.Stdout)
		}
	}
}

// A command with a Heartbeat reads a newline every Heartbeat on its
// standard input, through one srun or a batch (srun's stdin, which every
// task reads); stdin still ends with its context.
func TestSrunHeartbeatReachesTheTask(t *testing.T) {
	// Three beats, then wait for the end of stdin: the context's.
	line := `n=0; while [ $n -lt 3 ] && read -r l; do n=$((n+1)); done; echo "beats $n"; cat >/dev/null; echo closed`
	cmd := Command{Line: line, Heartbeat: 50 * time.Millisecond}
	check := func(how string, res Result, err error) {
		t.Helper()
		if string(res.Stdout) != "beats 3\n" && string(res.Stdout) != "beats 3\nclosed\n" || ErrorKind(err) != KindTimeout && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %q %v", how, res.Stdout, err)
		}
	}
	g, _ := newFakeGroup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for n, r := range runCommandOnAll(ctx, g, []string{"n1", "n2"}, cmd) {
		check("batch "+n, r.res, r.err)
	}
	if g.Batches() != 1 {
		t.Errorf("%d batches, want 1", g.Batches())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := newFakeSrun(t, "node01").Run(ctx, cmd)
	check("alone", res, err)
}
