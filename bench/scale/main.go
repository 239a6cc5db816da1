// Command bench-scale measures what cvs costs the operator's machine (the
// controller) per host, for the three ways it reaches hosts and moves
// images, and extrapolates to clusters this machine cannot hold:
//
//   - SSH fan-out: `cvs exec -- true` on a farm of real loopback sshds
//     (internal/sshdfarm), up to 500+ hosts;
//   - image push over SSH: `cvs image push` of an image with one big layer
//     to the lab's hosts (real dockerd each), through the docker CLI and
//     SFTP (CVS_DOCKER_ACCESS=cli) and through the Engine API;
//   - Slurm: `cvs exec -- true` and `cvs image push` with [engine] kind =
//     "slurm" inside salloc on the Slurm lab (srun tasks, sbcast).
//
// For every run it records the controller's CPU time (cvs and every
// process it reaped: srun, sbcast), the peak memory of cvs and all its
// descendants (sampled), and the bytes this machine sent to the hosts (an
// iptables counter on OUTPUT), then fits cost = fixed + per-host × N over
// the measured N and extrapolates. It writes a Markdown report with the
// command that produced it.
//
//	make bench-scale
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/lab"
)

type config struct {
	Farm, Lab, At []int
	Runs          int
	SizeMiB       int
	CVS, Out, Dir string
	SlurmDir      string
	SlurmSubnet   string
}

func main() {
	var c config
	var farm, labN, at string
	flag.StringVar(&farm, "farm", "100,250,500", "host counts of the sshd farm (SSH fan-out); empty skips it")
	flag.StringVar(&labN, "lab", "2,4,8", "host counts on the lab and the Slurm lab (pushes, srun); empty skips them")
	flag.StringVar(&at, "at", "1000,5000", "host counts to extrapolate to")
	flag.IntVar(&c.Runs, "runs", 3, "measured runs per method and N (after one warm-up)")
	flag.IntVar(&c.SizeMiB, "size", 64, "size of the pushed image's big layer, MiB")
	flag.StringVar(&c.CVS, "cvs", "bin/cvs", "the cvs binary")
	flag.StringVar(&c.Out, "out", "bench/SCALE-RESULTS.md", "the report")
	flag.StringVar(&c.Dir, "workdir", "bench/out/scale", "work folder (cluster files, logs)")
	flag.StringVar(&c.SlurmDir, "slurm-lab", "/var/tmp/cvs-slurm-lab", "the Slurm lab's folder")
	flag.StringVar(&c.SlurmSubnet, "slurm-subnet", "172.30.0.0/24", "the Slurm lab's subnet")
	flag.Parse()
	var err error
	if c.Farm, err = ints(farm); err == nil {
		if c.Lab, err = ints(labN); err == nil {
			c.At, err = ints(at)
		}
	}
	if err != nil || c.Runs < 1 {
		fmt.Fprintln(os.Stderr, "bench-scale: -farm, -lab, -at take comma-separated positive counts; -runs at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// method is one way of reaching hosts, measured at several N.
type method struct {
	Name    string
	Where   string // what the hosts are
	Command string // the command, for the report (one N's)
	Points  []point
}

// point is the runs of one method at one N.
type point struct {
	N    int
	Runs []usage
}

func logf(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench-scale: "+f+"\n", a...) }

func run(ctx context.Context, c config) error {
	started := time.Now()
	abs, err := filepath.Abs(c.CVS)
	if err != nil {
		return err
	}
	c.CVS = abs
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return err
	}
	os.RemoveAll(c.Dir)
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	m, err := newMeter()
	if err != nil {
		return fmt.Errorf("the uplink counter needs iptables and root: %w", err)
	}
	defer m.close()
	// One cache and state for every cvs: the image is in the cache before
	// the first measured push.
	env := append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(c.Dir, "cache"), "XDG_STATE_HOME="+filepath.Join(c.Dir, "state"))
	var methods []*method
	if len(c.Farm) > 0 {
		mt, err := farmFanout(ctx, c, m, env)
		if err != nil {
			return fmt.Errorf("ssh fan-out: %w", err)
		}
		methods = append(methods, mt)
	}
	if len(c.Lab) > 0 {
		mts, err := labMethods(ctx, c, m, env)
		if err != nil {
			return err
		}
		methods = append(methods, mts...)
	}
	md := report(c, methods, started)
	if err := os.WriteFile(c.Out, []byte(md), 0o644); err != nil {
		return err
	}
	logf("wrote %s", c.Out)
	return nil
}

// runs measures argv (built per run) runs+1 times, the first a warm-up;
// before runs each time when set.
func (c config) runs(ctx context.Context, m *meter, name string, n int, build func() *exec.Cmd, before func() error) (point, error) {
	p := point{N: n}
	for r := 0; r <= c.Runs; r++ {
		if before != nil {
			if err := before(); err != nil {
				return p, err
			}
		}
		cmd := build()
		logPath := filepath.Join(c.Dir, fmt.Sprintf("%s-N%d-%d.log", slug(name), n, r))
		log, err := os.Create(logPath)
		if err != nil {
			return p, err
		}
		u, err := m.measure(ctx, cmd, log)
		log.Close()
		if err != nil {
			return p, fmt.Errorf("%s N=%d: %w (log %s)", name, n, err, logPath)
		}
		if u.ExitCode != 0 {
			return p, fmt.Errorf("%s N=%d: exit %d (log %s)", name, n, u.ExitCode, logPath)
		}
		what := "warm-up"
		if r > 0 {
			what = fmt.Sprintf("run %d", r)
			p.Runs = append(p.Runs, u)
		}
		logf("%-28s N=%-4d %-7s wall %6.2fs cpu %6.2fs mem %6.1f MiB up %8.2f MiB", name, n, what,
			u.Wall.Seconds(), u.CPU.Seconds(), mib(u.PeakRSS), mib(u.Uplink))
	}
	return p, nil
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// farmFanout: cvs exec -- true on N loopback sshds.
func farmFanout(ctx context.Context, c config, m *meter, env []string) (*method, error) {
	mt := &method{Name: "SSH fan-out", Where: "loopback sshd farm (one real OpenSSH sshd per host, 127.0.10.x)"}
	// The farm's addresses: 127.0.10.1 on, 254 per /24.
	if err := m.target("127.0.8.0/21"); err != nil {
		return nil, err
	}
	for _, n := range c.Farm {
		dir := filepath.Join(c.Dir, fmt.Sprintf("farm-%d", n))
		sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		f, err := sshdfarm.Start(sctx, sshdfarm.Options{N: n, Dir: dir})
		cancel()
		if err != nil {
			return nil, err
		}
		var hosts []string
		for _, h := range f.Hosts {
			hosts = append(hosts, strconv.Quote(h.Addr))
		}
		file := filepath.Join(dir, "cluster.toml")
		text := fmt.Sprintf(`user = %q
identity_file = [%q]
port = %d
known_hosts = %q
host_key_check = "strict"
connect_timeout = "20s"
max_parallel = %d
hosts = [%s]
[container]
image = "debian:bookworm"
name = "cvs-scale"
`, f.User, f.ClientKey, f.Hosts[0].Port, f.KnownHosts, n, strings.Join(hosts, ", "))
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			f.Stop()
			return nil, err
		}
		argv := []string{c.CVS, "--cluster", file, "-q", "exec", "--", "true"}
		mt.Command = strings.Join(argv, " ") + "  (max_parallel = N)"
		p, err := c.runs(ctx, m, mt.Name, n, func() *exec.Cmd {
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env, cmd.SysProcAttr = env, sysProcAttr()
			return cmd
		}, func() error { return idle(ctx, f) })
		f.Stop()
		if err != nil {
			return nil, err
		}
		mt.Points = append(mt.Points, p)
	}
	return mt, nil
}

// idle waits for the farm's sshds to close the previous run's
// connections.
func idle(ctx context.Context, f *sshdfarm.Farm) error {
	for deadline := time.Now().Add(time.Minute); f.Connections() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d sshd connections still open", f.Connections())
		}
	}
	return nil
}

// labMethods: pushes over SSH on the lab, srun and sbcast on the Slurm
// lab, at the lab counts.
func labMethods(ctx context.Context, c config, m *meter, env []string) ([]*method, error) {
	maxN := 0
	for _, n := range c.Lab {
		maxN = max(maxN, n)
	}
	sshLab, err := lab.OpenAtLeast(ctx, lab.Config{}, maxN, logf)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	image, err := bigImage(ctx, sshLab, c.SizeMiB)
	if err != nil {
		return nil, err
	}
	emptyAll := func(l *lab.Lab) func() error {
		return func() error {
			for _, h := range l.Hosts() {
				// Every image: each push sends the whole image.
				l.HostExec(ctx, h.Name, "sh", "-c", "docker rm -f $(docker ps -aq) >/dev/null 2>&1; docker rmi -f $(docker images -aq) >/dev/null 2>&1; true")
			}
			return nil
		}
	}
	var out []*method
	for _, mode := range []string{"cli", "api"} {
		name := "push over SSH, SFTP"
		if mode == "api" {
			name = "push over SSH, Engine API"
		}
		mt := &method{Name: name, Where: "the lab: one container per host with its own IP, sshd and dockerd"}
		if err := m.target(sshLab.Gateway().String()+"/24", sshLab.Gateway().String()); err != nil {
			return nil, err
		}
		for _, n := range c.Lab {
			file, err := labCluster(c, sshLab, n, image, false)
			if err != nil {
				return nil, err
			}
			argv := []string{c.CVS, "--cluster", file, "-q", "image", "push", image}
			mt.Command = fmt.Sprintf("CVS_DOCKER_ACCESS=%s %s", mode, strings.Join(argv, " "))
			p, err := c.runs(ctx, m, name, n, func() *exec.Cmd {
				cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
				cmd.Env, cmd.SysProcAttr = append(env, "CVS_DOCKER_ACCESS="+mode), sysProcAttr()
				return cmd
			}, emptyAll(sshLab))
			if err != nil {
				return nil, err
			}
			mt.Points = append(mt.Points, p)
		}
		out = append(out, mt)
	}
	emptyAll(sshLab)()

	scfg := lab.Config{Dir: c.SlurmDir, Log: os.Stderr}
	if scfg.Subnet, err = netip.ParsePrefix(c.SlurmSubnet); err != nil {
		return nil, err
	}
	sl, err := lab.Open(ctx, scfg)
	if err != nil || !sl.Slurm() || len(sl.Hosts()) < maxN {
		logf("bringing up a Slurm lab of %d hosts in %s", maxN, c.SlurmDir)
		if sl, err = lab.New(scfg); err != nil {
			return nil, err
		}
		if err := sl.UpWith(ctx, maxN, lab.UpOptions{Slurm: true}); err != nil {
			return nil, err
		}
	}
	if err := m.target(sl.Gateway().String()+"/24", sl.Gateway().String()); err != nil {
		return nil, err
	}
	for _, w := range []struct {
		name string
		args []string
		push bool
	}{
		{"srun fan-out", []string{"exec", "--", "true"}, false},
		{"push through sbcast", []string{"image", "push", image}, true},
	} {
		mt := &method{Name: w.name, Where: fmt.Sprintf("the Slurm lab: the lab's hosts plus munge and slurmd (TreeWidth=%d); slurmctld in its own container; cvs inside salloc", treeWidth(sl))}
		for _, n := range c.Lab {
			file, err := labCluster(c, sl, n, image, true)
			if err != nil {
				return nil, err
			}
			var nodes []string
			for _, h := range sl.Hosts()[:n] {
				nodes = append(nodes, h.Name)
			}
			argv := append([]string{"salloc", "-N", strconv.Itoa(n), "-w", strings.Join(nodes, ","), "--quiet", c.CVS, "--cluster", file, "-q"}, w.args...)
			mt.Command = strings.Join(argv, " ")
			var before func() error
			if w.push {
				before = emptyAll(sl)
			}
			p, err := c.runs(ctx, m, w.name, n, func() *exec.Cmd {
				cmd := sl.SlurmCommand(ctx, argv[0], argv[1:]...)
				cmd.Dir, cmd.SysProcAttr = "/tmp", sysProcAttr()
				for _, kv := range env {
					if strings.HasPrefix(kv, "XDG_") {
						cmd.Env = append(cmd.Env, kv)
					}
				}
				return cmd
			}, before)
			if err != nil {
				return nil, err
			}
			mt.Points = append(mt.Points, p)
		}
		out = append(out, mt)
	}
	emptyAll(sl)()
	return out, nil
}

// treeWidth is the TreeWidth in the lab's slurm.conf (Slurm's default
// when it says none).
func treeWidth(l *lab.Lab) int {
	b, _ := os.ReadFile(l.SlurmConfFile())
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "TreeWidth="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return 50 // Slurm's default
}

// bigImage builds the lab's workload image plus one layer of sizeMiB random
// bytes on host1 and pushes it to the lab's registry.
func bigImage(ctx context.Context, l *lab.Lab, sizeMiB int) (string, error) {
	ref := fmt.Sprintf("%s/bench/scale:%d", l.Registry(), sizeMiB)
	h := l.Hosts()[0].Name
	for _, argv := range [][]string{
		{"pull", "--quiet", l.WorkloadImage()}, {"rm", "-f", "bench-scale"},
		{"run", "--name", "bench-scale", l.WorkloadImage(), "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > /big.bin", sizeMiB<<20)},
		{"commit", "bench-scale", ref}, {"rm", "-f", "bench-scale"}, {"push", ref}, {"rmi", ref},
	} {
		if res, err := l.HostDocker(ctx, h, argv...); err != nil {
			return "", fmt.Errorf("docker %s on %s: %v %s", strings.Join(argv, " "), h, err, res.Stderr)
		}
	}
	return ref, nil
}

// labCluster writes a cluster file for the first n hosts of l.
func labCluster(c config, l *lab.Lab, n int, image string, slurm bool) (string, error) {
	var hosts []string
	for _, h := range l.Hosts()[:n] {
		name := h.Addr.String()
		if slurm {
			name = h.Name
		}
		hosts = append(hosts, strconv.Quote(name))
	}
	engine := ""
	if slurm {
		engine = "[engine]\nkind = \"slurm\"\n"
	}
	text := fmt.Sprintf(`user = "root"
identity_file = %q
known_hosts = %q
hosts = [%s]
%s[container]
image = %q
name = "cvs-scale"
distribute = "push"
`, l.IdentityFile(), l.KnownHostsFile(), strings.Join(hosts, ", "), engine, image)
	kind := "ssh"
	if slurm {
		kind = "slurm"
	}
	file := filepath.Join(c.Dir, fmt.Sprintf("cluster-%s-%d.toml", kind, n))
	return file, os.WriteFile(file, []byte(text), 0o644)
}
