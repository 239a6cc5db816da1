package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// usage is what one run of a command cost this machine (the controller).
type usage struct {
	Wall time.Duration
	// CPU is user+sys of the command and every descendant it reaped (srun,
	// sbcast, salloc's cvs).
	CPU time.Duration
	// PeakRSS is the largest sum of the resident memory of the command and
	// all its descendants at one moment (sampled every 20 ms), bytes.
	PeakRSS int64
	// Uplink is the bytes (IP packets, headers included) this machine sent
	// to the hosts while the command ran, counted by an iptables rule.
	Uplink   int64
	ExitCode int
}

// meter counts the bytes sent to a set of addresses with a chain of its
// own in iptables' OUTPUT: one rule that RETURNs for excluded addresses,
// then one counting rule.
type meter struct {
	chain string
}

func newMeter() (*meter, error) {
	m := &meter{chain: fmt.Sprintf("CVSSCALE%d", os.Getpid())}
	if err := ipt("-N", m.chain); err != nil {
		return nil, err
	}
	if err := ipt("-I", "OUTPUT", "-j", m.chain); err != nil {
		ipt("-X", m.chain)
		return nil, err
	}
	return m, nil
}

// close removes the chain.
func (m *meter) close() {
	ipt("-D", "OUTPUT", "-j", m.chain)
	ipt("-F", m.chain)
	ipt("-X", m.chain)
}

// target resets the chain to count packets to dest, except to the
// addresses in skip.
func (m *meter) target(dest string, skip ...string) error {
	if err := ipt("-F", m.chain); err != nil {
		return err
	}
	for _, s := range skip {
		if err := ipt("-A", m.chain, "-d", s, "-j", "RETURN"); err != nil {
			return err
		}
	}
	return ipt("-A", m.chain, "-d", dest)
}

// counted is the bytes of the counting rule (the chain's last).
func (m *meter) counted() (int64, error) {
	out, err := exec.Command("iptables", "-w", "-L", m.chain, "-n", "-v", "-x").Output()
	if err != nil {
		return 0, fmt.Errorf("iptables -L %s: %v", m.chain, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		return 0, fmt.Errorf("iptables -L %s: %q", m.chain, out)
	}
	return strconv.ParseInt(f[1], 10, 64)
}

func (m *meter) zero() error { return ipt("-Z", m.chain) }

func ipt(args ...string) error {
	if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// measure runs cmd and returns its usage; output goes to log.
func (m *meter) measure(ctx context.Context, cmd *exec.Cmd, log *os.File) (usage, error) {
	if err := m.zero(); err != nil {
		return usage{}, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "$ %s\n", strings.Join(cmd.Args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, err
	}
	var peak int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, treeRSS(cmd.Process.Pid))
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	wg.Wait()
	u := usage{Wall: time.Since(start), PeakRSS: peak, ExitCode: -1}
	if st := cmd.ProcessState; st != nil {
		u.ExitCode = st.ExitCode()
		u.CPU = st.UserTime() + st.SystemTime()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return u, err
	}
	up, cerr := m.counted()
	u.Uplink = up
	if ctx.Err() != nil {
		return u, ctx.Err()
	}
	return u, cerr
}

var pageSize = int64(os.Getpagesize())

// treeRSS is the resident memory of pid and all its descendants, bytes.
func treeRSS(root int) int64 {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; cut after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		parent[pid] = ppid
	}
	var total int64
	for pid := range parent {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += rss(pid)
				break
			}
		}
	}
	return total
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * pageSize
}

// sysProcAttr puts a measured command in its own process group.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
