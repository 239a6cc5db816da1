package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDetached starts argv as a daemon that outlives this process: in a new
// session (no signal from the caller's terminal reaches it), with stdin from
// /dev/null and stdout and stderr appended to logPath, and its PID written to
// pidPath. `setsid --fork` makes init its parent at once, so no process of
// ours is left holding a zombie when it exits.
func startDetached(ctx context.Context, pidPath, logPath string, argv ...string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// sh writes its own PID, then execs the daemon in place, so the PID in
	// the file is the daemon's.
	script := `echo $$ >"$0" && exec "$@"`
	args := append([]string{"--fork", "/bin/sh", "-c", script, pidPath}, argv...)
	cmd := exec.CommandContext(ctx, "setsid", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	// setsid returns once it has forked; wait for the PID file.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if pid, _ := readPID(pidPath); pid > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("start %s: no PID in %s (see %s)", argv[0], pidPath, logPath)
}

// readPID returns the PID recorded in path, 0 if the file is missing or empty.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, nil
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, s)
	}
	return pid, nil
}

// procAlive reports whether pid runs and its command line contains marker (a
// path unique to this lab). The marker guards against a recycled PID: a stale
// pid file must never make the lab signal someone else's process. A zombie
// counts as gone.
func procAlive(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), marker) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return !isZombieStat(stat)
}

// processGone reports whether pid has exited: absent from the process
// table, or a zombie waiting to be reaped.
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err != nil || isZombieStat(stat)
}

// isZombieStat reports whether a /proc/PID/stat line is a zombie's. The
// state follows the parenthesised command name: "pid (comm) Z ...".
func isZombieStat(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// stopPID sends SIGTERM to pid (if it is alive and carries marker), waits up
// to grace for it to exit, then sends SIGKILL and waits again.
func stopPID(ctx context.Context, pid int, marker string, grace time.Duration) error {
	if !procAlive(pid, marker) {
		return nil
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal pid %d: %w", pid, err)
		}
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			if !procAlive(pid, marker) {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		grace = 5 * time.Second
	}
	return fmt.Errorf("pid %d did not exit after SIGKILL", pid)
}

// lingering lists processes this lab left behind: those whose command line
// names the lab's run directory (its dockerd, containerd, shims, registry)
// and those inside the lab's cgroups (host containers and what runs in them).
// Nothing else on the machine matches either, so they are safe to kill.
func (l *Lab) lingering() map[int]string {
	found := map[int]string{}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		if strings.Contains(cmd, l.paths.run+"/") {
			found[pid] = cmd
		}
	}
	for _, dir := range l.cgroupDirs("pids") {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			f, err := os.Open(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return nil
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if pid, err := strconv.Atoi(sc.Text()); err == nil && pid != self {
					if _, ok := found[pid]; !ok {
						b, _ := os.ReadFile("/proc/" + sc.Text() + "/cmdline")
						found[pid] = strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
					}
				}
			}
			return nil
		})
	}
	return found
}

// cgroupDirs returns the lab's cgroup directories under one controller (or
// under every controller when controller is empty): the outer daemon's
// parent and each inner daemon's parent. Only cgroup v1 and v2 layouts under
// /sys/fs/cgroup are considered.
func (l *Lab) cgroupDirs(controller string) []string {
	roots := []string{"/sys/fs/cgroup"}
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
			}
		}
	}
	if controller != "" {
		roots = []string{"/sys/fs/cgroup", filepath.Join("/sys/fs/cgroup", controller)}
	}
	var dirs []string
	prefix := l.cgroupParent()
	for _, r := range roots {
		ents, err := os.ReadDir(r)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && (e.Name() == prefix || strings.HasPrefix(e.Name(), prefix+"-")) {
				dirs = append(dirs, filepath.Join(r, e.Name()))
			}
		}
	}
	return dirs
}

// removeCgroups removes the lab's (empty) cgroup directories, deepest first.
// The kernel refuses to remove a cgroup that still has processes, so this
// can never disturb a running process.
func (l *Lab) removeCgroups() error {
	var errs []error
	for _, dir := range l.cgroupDirs("") {
		var all []string
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(all[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", all[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeTree removes path like os.RemoveAll, but first detaches anything
// mounted below it, so a leftover mount can never make it delete files
// outside the lab.
func removeTree(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	mounts, err := mountsUnder(path)
	if err != nil {
		return err
	}
	// Deepest first.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("%s is mounted and cannot be unmounted (%v); unmount it, then retry", mounts[i], err)
		}
	}
	return os.RemoveAll(path)
}

func mountsUnder(path string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == path || strings.HasPrefix(mp, path+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Owns reports whether process pid is this lab's: in one of its cgroups
// (its daemons' containers and theirs), or started with the lab's folder
// on its command line (what the lab runs on this machine, its munged say).
// Another lab's processes on the same machine are not.
func (l *Lab) Owns(pid int) bool {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil &&
		strings.Contains(strings.ReplaceAll(string(b), "\x00", " ")+" ", l.cfg.Dir+"/") {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && cgroupOwned(string(b), l.cgroupParent())
}

// cgroupOwned reports whether a /proc/PID/cgroup text puts the process in
// a cgroup under parent (or parent-HOST).
func cgroupOwned(text, parent string) bool {
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (strings.HasPrefix(f[2], "/"+parent+"/") || strings.HasPrefix(f[2], "/"+parent+"-")) {
			return true
		}
	}
	return false
}
