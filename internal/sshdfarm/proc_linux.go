package sshdfarm

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts each sshd in its own process group, so a terminal's
// Ctrl-C reaches the test binary (which stops the farm) rather than the
// sshds directly, and asks the kernel to kill the sshd if the process
// that started it dies without calling Stop (a test binary killed on
// timeout would otherwise leave sshds listening).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// childrenOf returns the PIDs of the running processes whose parent is
// one of pids, read from /proc.
func childrenOf(pids []int) []int {
	parents := make(map[int]bool, len(pids))
	for _, p := range pids {
		parents[p] = true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in field 2 may contain spaces; fields after
		// its closing parenthesis are "state ppid ...".
		s := string(stat)
		rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(rest) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(rest[1]); err == nil && parents[ppid] {
			out = append(out, pid)
		}
	}
	return out
}
