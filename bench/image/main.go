// Command bench-image measures image distribution to the lab's hosts, side
// by side in one run: `cvs image push` (only the layers each host lacks,
// over SSH), every host pulling from the lab registry in parallel, and
// `docker save | ssh HOST docker load` host after host; then a one-layer
// change of the image pushed with cvs, and a repeat push. It writes a
// Markdown table with the commands that produced it.
//
//	make bench-image            # 8 hosts, a 1 GiB image, 3 runs
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/lab"
	"github.com/cvs-tool/cvs/shell"
)

func main() {
	hosts := flag.Int("hosts", 8, "lab hosts")
	sizeMiB := flag.Int("size", 1024, "size of the image's big layer, MiB")
	runs := flag.Int("runs", 3, "measured runs of each method")
	cvs := flag.String("cvs", "bin/cvs", "the cvs binary")
	out := flag.String("out", "bench/IMAGE-RESULTS.md", "the results file")
	flag.Parse()
	if err := run(*hosts, *sizeMiB, *runs, *cvs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench-image:", err)
		os.Exit(1)
	}
}

type result struct {
	name  string
	times []time.Duration
	note  string
}

func (r result) median() time.Duration {
	t := append([]time.Duration(nil), r.times...)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	return t[len(t)/2]
}

func run(n, sizeMiB, runs int, cvs, out string) error {
	ctx := context.Background()
	started := time.Now()
	l, err := lab.OpenAtLeast(ctx, lab.Config{}, n, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		return err
	}
	hosts := l.Hosts()[:n]
	big := l.Registry() + "/bench/big:1"
	bigger := l.Registry() + "/bench/big:2"
	h1 := hosts[0].Name
	fmt.Fprintf(os.Stderr, "building a %d MiB image on %s\n", sizeMiB, h1)
	for _, argv := range [][]string{
		{"pull", "--quiet", l.WorkloadImage()}, {"rm", "-f", "bench-big"},
		{"run", "--name", "bench-big", l.WorkloadImage(), "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > /big.bin", sizeMiB<<20)},
		{"commit", "bench-big", big}, {"rm", "-f", "bench-big"}, {"push", big},
		{"run", "--name", "bench-big", big, "sh", "-c", "echo one more layer > /small.txt"},
		{"commit", "bench-big", bigger}, {"rm", "-f", "bench-big"}, {"push", bigger},
	} {
		if res, err := l.HostDocker(ctx, h1, argv...); err != nil {
			return fmt.Errorf("docker %s: %v %s", strings.Join(argv, " "), err, res.Stderr)
		}
	}
	dir, err := os.MkdirTemp("", "bench-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var addrs []string
	for _, h := range hosts {
		addrs = append(addrs, fmt.Sprintf("%q", h.Addr.String()))
	}
	cluster := filepath.Join(dir, "cluster.toml")
	os.WriteFile(cluster, []byte(fmt.Sprintf(`user = "root"
identity_file = %q
known_hosts = %q
hosts = [%s]
[container]
image = %q
name = "bench"
distribute = "push"
`, l.IdentityFile(), l.KnownHostsFile(), strings.Join(addrs, ", "), big)), 0o600)
	env := append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
	cvsRun := func(args ...string) error {
		cmd := exec.CommandContext(ctx, cvs, append([]string{"--cluster", cluster, "-q"}, args...)...)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("cvs %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	}
	// This machine's cache holds the image before the clock starts, as the
	// registry does for the pulls.
	if err := cvsRun("image", "push", bigger); err != nil {
		return err
	}
	if err := cvsRun("image", "push", big); err != nil {
		return err
	}
	// The outer daemon has the image for docker save.
	outer := filepath.Join(l.Dir(), "run", "docker.sock")
	if b, err := exec.Command("docker", "-H", "unix://"+outer, "pull", "-q", big).CombinedOutput(); err != nil {
		return fmt.Errorf("outer pull: %v %s", err, b)
	}
	empty := func() {
		for _, h := range hosts {
			l.HostExec(ctx, h.Name, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; docker rmi -f $(docker images -q) 2>/dev/null; true")
		}
	}
	parallelPull := func(ref string) error {
		errs := make(chan error, len(hosts))
		for _, h := range hosts {
			go func() {
				_, err := l.HostDocker(ctx, h.Name, "pull", "--quiet", ref)
				errs <- err
			}()
		}
		for range hosts {
			if err := <-errs; err != nil {
				return err
			}
		}
		return nil
	}
	serialSaveLoad := func() error {
		for _, h := range hosts {
			ssh, err := l.SSHArgs(h.Name)
			if err != nil {
				return err
			}
			line := shell.Join("docker", "-H", "unix://"+outer, "save", big) + " | " + shell.Join(append(ssh, "docker load -q")...)
			if b, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v %s", h.Name, err, b)
			}
		}
		return nil
	}
	timed := func(setup func(), fn func() error) (time.Duration, error) {
		setup()
		start := time.Now()
		err := fn()
		return time.Since(start), err
	}
	full := result{name: fmt.Sprintf("cvs image push (%d hosts, empty)", n)}
	pull := result{name: fmt.Sprintf("docker pull from the lab registry, %d hosts in parallel", n)}
	serial := result{name: "docker save \\| ssh docker load, host after host"}
	delta := result{name: "cvs image push of a one-layer change (hosts hold the image)"}
	repeat := result{name: "cvs image push again (nothing to send)"}
	for i := 0; i < runs; i++ {
		fmt.Fprintf(os.Stderr, "run %d of %d\n", i+1, runs)
		for _, m := range []struct {
			r  *result
			fn func() error
		}{
			{&pull, func() error { return parallelPull(big) }},
			{&full, func() error { return cvsRun("image", "push", big) }},
			{&serial, serialSaveLoad},
		} {
			d, err := timed(empty, m.fn)
			if err != nil {
				return err
			}
			m.r.times = append(m.r.times, d)
		}
		// The hosts hold big:1 now (serial load): the change is one layer.
		d, err := timed(func() {}, func() error { return cvsRun("image", "push", bigger) })
		if err != nil {
			return err
		}
		delta.times = append(delta.times, d)
		d, err = timed(func() {}, func() error { return cvsRun("image", "push", bigger) })
		if err != nil {
			return err
		}
		repeat.times = append(repeat.times, d)
	}
	empty()
	var b strings.Builder
	fmt.Fprintf(&b, "# Image distribution benchmark\n\nWritten by bench/image (`make bench-image`) on %s UTC in %s, invoked as `%s`. "+
		"%d lab hosts (each its own Docker 20.10 daemon, overlay2), an image of the lab's workload plus one %d MiB layer of random bytes "+
		"(`%s`), and a one-layer change of it (`%s`). Before every full distribution the hosts' image stores are emptied; this machine's cvs cache "+
		"and the lab registry hold the images before the clock starts. One method at a time; %d runs; wall time.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), time.Since(started).Round(time.Second), strings.Join(os.Args, " "), n, sizeMiB, big, bigger, runs)
	b.WriteString("| method | wall s, median (min–max) | × registry pull |\n|---|---|---|\n")
	base := pull.median()
	for _, r := range []result{pull, full, serial, delta, repeat} {
		mn, mx := r.times[0], r.times[0]
		for _, t := range r.times {
			mn, mx = min(mn, t), max(mx, t)
		}
		fmt.Fprintf(&b, "| %s | %.2f (%.2f–%.2f) | %.2f |\n", r.name, r.median().Seconds(), mn.Seconds(), mx.Seconds(), r.median().Seconds()/base.Seconds())
	}
	target := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**missed**"
	}
	fmt.Fprintf(&b, "\n## Targets\n\n- full push within 1.2× of the parallel registry pull: %.2f× %s\n", full.median().Seconds()/base.Seconds(), target(full.median().Seconds() <= 1.2*base.Seconds()))
	fmt.Fprintf(&b, "- one-layer update under 5%% of the full push: %.1f%% %s\n", 100*delta.median().Seconds()/full.median().Seconds(), target(delta.median().Seconds() < 0.05*full.median().Seconds()))
	fmt.Fprintf(&b, "- repeat push under 2 s: %.2f s %s\n", repeat.median().Seconds(), target(repeat.median() < 2*time.Second))
	return os.WriteFile(out, []byte(b.String()), 0o644)
}
