package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report renders the markdown written to bench/RESULTS.md.
func report(ctx context.Context, c config, results []result, started time.Time, bins map[string]string, loadBefore string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	w("# Fan-out benchmark: cvs vs pdsh, clush, parallel-ssh\n\n")
	w("Written by bench/fanout (`make bench-fanout` runs it) on %s, in %v, invoked as `%s`. Every tool runs `true` on N loopback hosts, each a real OpenSSH sshd with its own address and ed25519 host key; same user, client key (ed25519), port and strict host-key checking against the same known_hosts for all tools; no connection sharing. ", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second), commandLine(os.Args[0], os.Args[1:], nil))
	w("One warm-up run of every tool, then %d measured runs with the tool order rotated each time; strictly one tool at a time, each starting after the sshds have closed the previous run's connections. The clients and all sshds share this machine's CPUs, so each connection's server-side cost is included in every figure.\n\n", c.Runs)
	w("Columns: wall time median (min–max) over %d runs; ratio of medians to `cvs exec -- true`; client CPU (user+sys of the tool and the processes it reaped, e.g. its ssh children), median; peak RSS, the largest single process (the tool or one of its reaped children) over all runs; handshakes per run counted server-side (`Accepted publickey` lines added to the sshd logs); exit codes of the measured runs.\n\n", c.Runs)

	w("## Targets\n\n")
	if c.DockerSocket != "" {
		w("`cvs status` asks Docker through the Engine API over each host's SSH connection (`docker_socket = %q`: one real daemon, the lab's, that every loopback host reaches); the reference row `%s` is the same command through the docker CLI (`CVS_DOCKER_ACCESS=cli`; the farm hosts' CLI finds no daemon at its default socket).\n\n", c.DockerSocket, nameCVSStatusCLI)
	}
	for _, line := range targets(results, c.DockerSocket != "") {
		w("- %s\n", line)
	}
	w("\n")
	if lines := statusGap(results); len(lines) > 0 {
		if c.DockerSocket != "" {
			w("Where `cvs status` spends its extra time: besides the probe's host script (one command over SSH, as `cvs exec` runs), each host opens a channel to the daemon's socket and makes four API requests (ping, version, container and image inspect); here every host's requests go to the same daemon, on the same CPUs as the client and the 200 sshds. For scale, the reference row `cvs exec -- docker version` starts the docker CLI on every host (it reports the daemon absent):\n\n")
		} else {
			w("Where `cvs status` spends its extra time: its probe runs the docker CLI on every host, and here every host's CLI runs on the same CPUs as the client. The reference row `cvs exec -- docker version` runs just that call (the CLI reports the daemon absent, as in the probe):\n\n")
		}
		for _, l := range lines {
			w("- %s\n", l)
		}
		w("\n")
	}

	for _, r := range results {
		w("## N = %d\n\n", r.N)
		w("Hosts %s.1.. (port %d); farm started in %v.\n\n", strings.TrimSuffix(c.Subnet, "."), r.Port, r.FarmStart.Round(time.Millisecond))
		w("| tool | wall s, median (min–max) | × cvs exec | client CPU s | peak RSS MB | handshakes/run | exit codes |\n")
		w("|---|---|---|---|---|---|---|\n")
		base := medianWall(findRow(r, nameCVSExec))
		for _, rw := range r.Rows {
			if rw.Skipped != "" {
				w("| %s | not run: %s | | | | | |\n", rw.Label, rw.Skipped)
				continue
			}
			ratio := "–"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f", medianWall(&rw).Seconds()/base.Seconds())
			}
			lo, hi := minMaxWall(rw.Samples)
			w("| %s | %.3f (%.3f–%.3f) | %s | %.3f | %.1f | %s | %s |\n",
				rw.Label, medianWall(&rw).Seconds(), lo.Seconds(), hi.Seconds(), ratio,
				medianCPU(rw.Samples).Seconds(), float64(maxRSS(rw.Samples))/1024,
				handshakes(rw.Samples), exitCodes(rw.Samples))
		}
		w("\n")
	}

	for _, r := range results {
		if r.Control == nil {
			continue
		}
		w("## Host-key check control (N = %d)\n\n", r.N)
		w("Before the warm-up, host %s got a new host key that known_hosts does not hold, and every tool ran once. A tool that checks host keys strictly logs in to the other %d hosts only (sshd logs a login only after the client accepted its host key). Exit codes are shown as they came: pdsh without -S and clush with its default `maxrc: no` exit 0 even when a host fails.\n\n", r.ControlHost, r.N-1)
		w("| tool | exit code | handshakes | refused the changed key |\n|---|---|---|---|\n")
		for i, rw := range r.Rows {
			smp := r.Control[i]
			if smp == nil {
				continue
			}
			ok := "yes"
			if smp.Handshakes != r.N-1 {
				ok = "**no**"
			}
			w("| %s | %d | %d | %s |\n", rw.Label, smp.ExitCode, smp.Handshakes, ok)
		}
		w("\n")
	}

	w("## Command lines\n\n")
	w("As run for the largest N (paths under the work directory; the files are regenerated each run). The OpenSSH-based tools read one ssh_config with `-F`, so neither `~/.ssh/config` nor `/etc/ssh/ssh_config` applies; `SSH_AUTH_SOCK` is removed from every tool's environment.\n\n")
	if len(results) > 0 {
		last := results[len(results)-1]
		w("```sh\n")
		for _, rw := range last.Rows {
			if rw.Command != "" {
				w("# %s\n%s\n", rw.Label, rw.Command)
			}
		}
		w("```\n\n")
		w("ssh_config used by pdsh, clush and parallel-ssh:\n\n```\n%s```\n\n", readOr(last, "ssh_config"))
		w("cvs cluster file (host list shortened):\n\n```toml\n%s```\n\n", shortenHosts(readOr(last, "cluster.toml")))
	}

	w("## Machine\n\n")
	for _, kv := range machineInfo(ctx, bins) {
		w("- %s: %s\n", kv[0], kv[1])
	}
	// Only the value at start says something about other work: the
	// benchmark's own runs (N ssh processes at once) drive it far up.
	w("- load average (1, 5, 15 min) before the first run: %s\n", loadBefore)
	return b.String()
}

// targets checks the goals against the medians.
func targets(results []result, api bool) []string {
	// Through the API the status probe starts no process on the host:
	// the issue asks 1.2× then, 1.5× through the CLI.
	limit := 1.5
	if api {
		limit = 1.2
	}
	var out []string
	for _, r := range results {
		exec := findRow(r, nameCVSExec)
		status := findRow(r, nameCVSStatus)
		if exec == nil || len(exec.Samples) == 0 {
			out = append(out, fmt.Sprintf("N=%d: cvs exec was not measured.", r.N))
			continue
		}
		ex := medianWall(exec)
		if r.N == 50 || r.N == 200 {
			var slower, faster []string
			for _, rw := range r.Rows {
				if rw.Tool.Bin == "cvs" || rw.Tool.Ref || len(rw.Samples) == 0 {
					continue
				}
				m := medianWall(&rw)
				s := fmt.Sprintf("%s %.3f s", rw.Label, m.Seconds())
				if ex < m {
					slower = append(slower, s)
				} else {
					faster = append(faster, s)
				}
			}
			if len(faster) == 0 && len(slower) > 0 {
				out = append(out, fmt.Sprintf("N=%d: cvs exec (%.3f s) faster than every baseline: **met** (next best: %s).", r.N, ex.Seconds(), fastest(r)))
			} else if len(slower) == 0 && len(faster) == 0 {
				out = append(out, fmt.Sprintf("N=%d: no baseline was measured.", r.N))
			} else {
				out = append(out, fmt.Sprintf("N=%d: cvs exec (%.3f s) faster than every baseline: **missed**; not slower than cvs: %s.", r.N, ex.Seconds(), strings.Join(faster, ", ")))
			}
		}
		if status != nil && len(status.Samples) > 0 {
			ratio := medianWall(status).Seconds() / ex.Seconds()
			verdict := "met"
			if ratio > limit {
				verdict = "missed"
			}
			out = append(out, fmt.Sprintf("N=%d: cvs status within %.1f× of cvs exec: %.2f× (%.3f s vs %.3f s): **%s**.", r.N, limit, ratio, medianWall(status).Seconds(), ex.Seconds(), verdict))
		}
		for _, rw := range []*row{exec, status} {
			if rw == nil || len(rw.Samples) == 0 {
				continue
			}
			ok := true
			for _, s := range rw.Samples {
				ok = ok && s.Handshakes == r.N
			}
			verdict := "met"
			if !ok {
				verdict = "missed"
			}
			out = append(out, fmt.Sprintf("N=%d: %s handshakes per run == N: %s: **%s**.", r.N, rw.Label, handshakes(rw.Samples), verdict))
		}
	}
	return out
}

// statusGap compares status's extra time over exec with the extra time
// of running the probe's docker call through exec.
func statusGap(results []result) []string {
	var out []string
	for _, r := range results {
		ex, st, dv := findRow(r, nameCVSExec), findRow(r, nameCVSStatus), findRow(r, nameCVSDocker)
		if ex == nil || st == nil || dv == nil || len(ex.Samples)*len(st.Samples)*len(dv.Samples) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("N=%d: cvs status − cvs exec -- true = %+.3f s; cvs exec -- docker version − cvs exec -- true = %+.3f s.",
			r.N, (medianWall(st)-medianWall(ex)).Seconds(), (medianWall(dv)-medianWall(ex)).Seconds()))
	}
	return out
}

// fastest names the fastest non-cvs, non-reference row of r.
func fastest(r result) string {
	best, name := time.Duration(0), ""
	for _, rw := range r.Rows {
		if rw.Tool.Bin == "cvs" || rw.Tool.Ref || len(rw.Samples) == 0 {
			continue
		}
		if m := medianWall(&rw); name == "" || m < best {
			best, name = m, rw.Label
		}
	}
	return fmt.Sprintf("%s %.3f s", name, best.Seconds())
}

func findRow(r result, name string) *row {
	for i := range r.Rows {
		if r.Rows[i].Tool.Name == name && r.Rows[i].Skipped == "" {
			return &r.Rows[i]
		}
	}
	return nil
}

func medianWall(rw *row) time.Duration {
	if rw == nil {
		return 0
	}
	var d []time.Duration
	for _, s := range rw.Samples {
		d = append(d, s.Wall)
	}
	return median(d)
}

func medianCPU(ss []sample) time.Duration {
	var d []time.Duration
	for _, s := range ss {
		d = append(d, s.CPU)
	}
	return median(d)
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

func minMaxWall(ss []sample) (lo, hi time.Duration) {
	for i, s := range ss {
		if i == 0 || s.Wall < lo {
			lo = s.Wall
		}
		if s.Wall > hi {
			hi = s.Wall
		}
	}
	return lo, hi
}

func maxRSS(ss []sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.MaxRSSKB)
	}
	return m
}

// handshakes summarises per-run handshake counts: "200" when all agree,
// else the distinct values.
func handshakes(ss []sample) string {
	return distinct(ss, func(s sample) string { return fmt.Sprint(s.Handshakes) })
}

func exitCodes(ss []sample) string {
	return distinct(ss, func(s sample) string {
		if s.Err != "" {
			return fmt.Sprintf("%d (%s)", s.ExitCode, s.Err)
		}
		return fmt.Sprint(s.ExitCode)
	})
}

// distinct lists the distinct values of f over ss in first-seen order,
// with a count when not all runs agree.
func distinct(ss []sample, f func(sample) string) string {
	var order []string
	count := map[string]int{}
	for _, s := range ss {
		v := f(s)
		if count[v] == 0 {
			order = append(order, v)
		}
		count[v]++
	}
	if len(order) == 1 {
		return order[0]
	}
	var parts []string
	for _, v := range order {
		parts = append(parts, fmt.Sprintf("%s ×%d", v, count[v]))
	}
	return strings.Join(parts, ", ")
}

func readOr(r result, name string) string {
	b, err := os.ReadFile(filepath.Join(r.Dir, name))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)\n", err)
	}
	return string(b)
}

// shortenHosts abbreviates a long TOML hosts array for the report.
func shortenHosts(toml string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(toml))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "hosts = [") {
			items := strings.Split(strings.TrimSuffix(strings.TrimPrefix(l, "hosts = ["), "]"), ", ")
			if len(items) > 3 {
				l = fmt.Sprintf("hosts = [%s, %s, ..., %s]  # %d hosts", items[0], items[1], items[len(items)-1], len(items))
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n"
}

// machineInfo describes the machine and the tool versions.
func machineInfo(ctx context.Context, bins map[string]string) [][2]string {
	info := [][2]string{
		{"OS", osRelease()},
		{"kernel", cmdOut(ctx, "uname", "-srm")},
		{"CPU", cpuModel()},
		{"memory", memTotal()},
		{"Go (harness)", runtime.Version()},
		{"OpenSSH client", cmdOut(ctx, "ssh", "-V")},
		{"sshd", firstLine(cmdOut(ctx, "/usr/sbin/sshd", "-V"))},
		{"docker CLI on the hosts (run by the status probe; no daemon)", dockerCLI(ctx)},
	}
	if p, ok := bins["cvs"]; ok {
		info = append(info, [2]string{"cvs", p + ": " + cmdOut(ctx, p, "version")})
	}
	if _, ok := bins["pdsh"]; ok {
		info = append(info, [2]string{"pdsh", firstLine(cmdOut(ctx, "pdsh", "-V"))})
	}
	if _, ok := bins["clush"]; ok {
		info = append(info, [2]string{"clush", cmdOut(ctx, "clush", "--version")})
	}
	if _, ok := bins["parallel-ssh"]; ok {
		info = append(info, [2]string{"parallel-ssh", cmdOut(ctx, "parallel-ssh", "--version")})
	}
	return info
}

func dockerCLI(ctx context.Context) string {
	p, err := exec.LookPath("docker")
	if err != nil {
		return "absent"
	}
	return p + ": " + cmdOut(ctx, p, "--version")
}

func cmdOut(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if s == "" && err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return s
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func osRelease() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown"
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	return fmt.Sprintf("%d × %s", runtime.NumCPU(), model)
}

// loadAvg returns the 1, 5 and 15 minute load averages: other work on
// the machine during the run shows up here.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
