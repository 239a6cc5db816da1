// Command fanout times cvs against pdsh, clush and parallel-ssh running
// `true` on N loopback sshd hosts, side by side in one run, and writes a
// markdown report (bench/RESULTS.md).
//
// For each N it starts a farm of real sshds (internal/sshdfarm), writes
// one cluster file for cvs and one ssh_config for the OpenSSH-based tools
// with the same user, key, port and strict known_hosts, runs every tool
// once as a warm-up, then R repetitions with the tool order rotated by
// one each time. Tools run strictly one at a time, each after the sshds
// have finished tearing down the previous run's connections. Handshakes
// are counted server-side from the sshd logs.
//
// Run it through `make bench-fanout`, which installs the baselines and
// builds cvs first.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/cvs-tool/cvs/shell"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cvs-tool/cvs/internal/sshdfarm"
)

type config struct {
	Ns      []int
	Runs    int
	CVS     string
	Out     string
	WorkDir string
	Subnet  string
	Port    int
	Timeout time.Duration
	Ref     bool
	Control bool
	Only    map[string]bool // tool binaries to run; empty means all
	// DockerSocket, when set, is a real Docker daemon's socket every farm
	// host reaches (they share this machine): cvs status asks it through
	// the Engine API over each host's SSH connection.
	DockerSocket string
}

func main() {
	var (
		c    config
		ns   string
		only string
		fs   = flag.CommandLine
	)
	fs.StringVar(&ns, "n", "10,50,200", "comma-separated host counts")
	fs.IntVar(&c.Runs, "runs", 5, "measured repetitions per tool and N (after one warm-up)")
	fs.StringVar(&c.CVS, "cvs", "bin/cvs", "path of the cvs binary under test")
	fs.StringVar(&c.Out, "out", "bench/RESULTS.md", "markdown report to write")
	fs.StringVar(&c.WorkDir, "workdir", "bench/out", "directory for farms, generated files and per-run logs (emptied per N)")
	fs.StringVar(&c.Subnet, "subnet", "127.0.10.", "loopback prefix of the farm hosts")
	fs.IntVar(&c.Port, "port", 0, "sshd port on every host (0: pick a free one)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "limit for one run of one tool")
	fs.BoolVar(&c.Ref, "ref", true, "add reference rows: pdsh -f N with ssh pinned to curve25519 key exchange, and cvs exec of the docker CLI call that cvs status makes on each host")
	fs.BoolVar(&c.Control, "control", true, "before measuring the first N, rotate host 1's key and check that every tool refuses it")
	fs.StringVar(&c.DockerSocket, "docker-socket", "", "a Docker daemon's socket for cvs status through the Engine API (e.g. the lab's /var/tmp/cvs-lab/run/docker.sock); without it the farm hosts have no daemon and status falls back to the docker CLI")
	fs.StringVar(&only, "only", "", "comma-separated binaries to run (cvs,pdsh,clush,parallel-ssh); default all")
	flag.Parse()

	for _, s := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench-fanout: -n %q: want positive integers such as 10,50,200\n", ns)
			os.Exit(2)
		}
		c.Ns = append(c.Ns, n)
	}
	if c.Runs < 1 {
		fmt.Fprintln(os.Stderr, "bench-fanout: -runs must be at least 1")
		os.Exit(2)
	}
	if only != "" {
		c.Only = map[string]bool{}
		for _, b := range strings.Split(only, ",") {
			c.Only[strings.TrimSpace(b)] = true
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fanout:", err)
		os.Exit(1)
	}
}

// row is one tool's results for one N.
type row struct {
	Tool    tool
	Label   string
	Command string // exact command line, with its extra environment
	Skipped string // why the tool did not run, if it did not
	Warmup  sample
	Samples []sample
}

// result is everything measured for one N.
type result struct {
	N         int
	Dir       string // the work directory of this N
	Port      int
	FarmStart time.Duration
	Rows      []row
	// Control holds, per row index, the run made after host 1's key was
	// rotated (nil when -control is off or for later Ns).
	Control     []*sample
	ControlHost string
}

func run(ctx context.Context, c config) error {
	started := time.Now()
	loadBefore := loadAvg()
	bins, skipped := resolveBinaries(c)
	for name, why := range skipped {
		fmt.Fprintf(os.Stderr, "bench-fanout: skipping %s: %s\n", name, why)
	}
	var results []result
	for i, n := range c.Ns {
		r, err := benchN(ctx, c, n, bins, skipped, c.Control && i == 0)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		results = append(results, r)
	}
	md := report(ctx, c, results, started, bins, loadBefore)
	if err := os.MkdirAll(filepath.Dir(c.Out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(c.Out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench-fanout: wrote %s\n", c.Out)
	return nil
}

// resolveBinaries finds each tool's executable; tools without one are
// reported as skipped rather than failing the whole benchmark.
func resolveBinaries(c config) (bins map[string]string, skipped map[string]string) {
	bins, skipped = map[string]string{}, map[string]string{}
	for _, t := range tools(c.Ref, c.DockerSocket != "") {
		if _, done := bins[t.Bin]; done {
			continue
		}
		if _, done := skipped[t.Bin]; done {
			continue
		}
		if c.Only != nil && !c.Only[t.Bin] {
			skipped[t.Bin] = "not selected by -only"
			continue
		}
		if t.Bin == "cvs" {
			p, err := filepath.Abs(c.CVS)
			if err == nil {
				_, err = os.Stat(p)
			}
			if err != nil {
				skipped[t.Bin] = fmt.Sprintf("%s not built (go build -o %s ./cmd/cvs)", c.CVS, c.CVS)
				continue
			}
			bins[t.Bin] = p
			continue
		}
		p, err := exec.LookPath(t.Bin)
		if err != nil {
			skipped[t.Bin] = "not installed (run scripts/bench-deps.sh)"
			continue
		}
		bins[t.Bin] = p
	}
	return bins, skipped
}

func benchN(ctx context.Context, c config, n int, bins, skipped map[string]string, control bool) (result, error) {
	dir, err := filepath.Abs(filepath.Join(c.WorkDir, fmt.Sprintf("N%d", n)))
	if err != nil {
		return result{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return result{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		return result{}, err
	}

	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	farm, err := sshdfarm.Start(sctx, sshdfarm.Options{N: n, Subnet: c.Subnet, Port: c.Port, Dir: filepath.Join(dir, "farm")})
	cancel()
	if err != nil {
		return result{}, err
	}
	defer farm.Stop()
	res := result{N: n, Dir: dir, Port: farm.Hosts[0].Port, FarmStart: time.Since(t0)}
	fmt.Fprintf(os.Stderr, "bench-fanout: N=%d: %d sshds on %s..%s port %d started in %v\n",
		n, n, farm.Hosts[0].Addr, farm.Hosts[n-1].Addr, res.Port, res.FarmStart.Round(time.Millisecond))

	s := &setup{N: n, Farm: farm, Dir: dir, DockerSocket: c.DockerSocket}
	if err := writeSetupFiles(s); err != nil {
		return result{}, err
	}

	ts := tools(c.Ref, c.DockerSocket != "")
	res.Rows = make([]row, len(ts))
	for i, t := range ts {
		res.Rows[i] = row{Tool: t, Label: t.label(n)}
		if why, ok := skipped[t.Bin]; ok {
			res.Rows[i].Skipped = why
			continue
		}
		args, env := t.Cmd(s)
		res.Rows[i].Command = commandLine(bins[t.Bin], args, env)
	}

	if control {
		if err := hostKeyControl(ctx, c, s, &res, bins); err != nil {
			return result{}, err
		}
	}

	// Repetition 0 is the warm-up; repetition r runs the tools rotated
	// by r-1 so that no tool always follows the same one.
	for rep := 0; rep <= c.Runs; rep++ {
		for k := range ts {
			i := (k + max(rep-1, 0)) % len(ts)
			rw := &res.Rows[i]
			if rw.Skipped != "" {
				continue
			}
			logPath := filepath.Join(dir, "runs", fmt.Sprintf("%02d-%s.log", rep, slug(rw.Tool.Name)))
			smp, err := runOnce(ctx, s, bins[rw.Tool.Bin], rw.Tool, logPath, c.Timeout)
			if err != nil {
				return result{}, err
			}
			what := "warm-up"
			if rep == 0 {
				rw.Warmup = smp
			} else {
				what = fmt.Sprintf("run %d/%d", rep, c.Runs)
				rw.Samples = append(rw.Samples, smp)
			}
			note := ""
			if smp.ExitCode != 0 || smp.Err != "" {
				note = fmt.Sprintf(" exit=%d %s (log %s)", smp.ExitCode, smp.Err, logPath)
			}
			fmt.Fprintf(os.Stderr, "bench-fanout: N=%d %s %-45s %7.3fs handshakes=%d%s\n",
				n, what, rw.Label, smp.Wall.Seconds(), smp.Handshakes, note)
		}
	}
	if err := farm.Stop(); err != nil {
		return result{}, fmt.Errorf("stop farm: %w", err)
	}
	return res, nil
}

// hostKeyControl proves that every tool checks host keys strictly: it
// gives host 1 a new key that known_hosts does not hold, runs each tool
// once (each should fail and log in to the other N-1 hosts only), then
// restores a matching known_hosts.
func hostKeyControl(ctx context.Context, c config, s *setup, res *result, bins map[string]string) error {
	if err := s.Farm.RotateHostKey(ctx, 0); err != nil {
		return fmt.Errorf("host-key control: %w", err)
	}
	res.Control = make([]*sample, len(res.Rows))
	res.ControlHost = s.Farm.Hosts[0].Addr
	for i := range res.Rows {
		rw := &res.Rows[i]
		if rw.Skipped != "" {
			continue
		}
		logPath := filepath.Join(s.Dir, "runs", "control-"+slug(rw.Tool.Name)+".log")
		smp, err := runOnce(ctx, s, bins[rw.Tool.Bin], rw.Tool, logPath, c.Timeout)
		if err != nil {
			return err
		}
		res.Control[i] = &smp
		fmt.Fprintf(os.Stderr, "bench-fanout: N=%d host-key control %-45s exit=%d handshakes=%d\n",
			s.N, rw.Label, smp.ExitCode, smp.Handshakes)
	}
	return s.Farm.WriteKnownHosts(s.Farm.KnownHosts, false)
}

// commandLine renders argv and extra environment as a shell command line.
func commandLine(bin string, args, env []string) string {
	var parts []string
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		parts = append(parts, k+"="+shell.Quote(v))
	}
	parts = append(parts, shell.Quote(bin))
	for _, a := range args {
		parts = append(parts, shell.Quote(a))
	}
	return strings.Join(parts, " ")
}

// slug turns a row name into a file-name fragment.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}
