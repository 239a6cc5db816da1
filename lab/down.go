package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// DownOptions tune Down.
type DownOptions struct {
	// Purge also removes the caches (images, root filesystems, apt
	// repository, registry storage) and the lab directory itself; the next
	// Up is then a cold one.
	Purge bool
}

// Down removes everything the lab created: host containers (and a Slurm
// lab's controller container, with the munged, slurmd and slurmctld in
// them), the network and its bridge, the lab's dockerd, registry and, for a
// Slurm lab, this machine's munged (by their recorded PIDs), any process left
// in the lab's cgroups or naming its run directory, the lab's cgroups, keys,
// cluster and known_hosts files and Slurm configuration. It keeps the caches unless
// opt.Purge. Down is idempotent: on a lab that is not up it only sweeps, and
// it cleans up after a crashed Up or a killed daemon too.
func (l *Lab) Down(ctx context.Context, opt DownOptions) error {
	if !dirExists(l.cfg.Dir) {
		return nil
	}
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()
	start := time.Now()
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// Containers can outlive a killed daemon. Starting the daemon again is
	// the reliable way to end them: it kills what it finds running.
	if !l.daemonRunning() && l.mayHaveContainers() {
		l.logf("down: starting the lab dockerd to remove leftover containers")
		keep(l.ensureDaemon(ctx))
	}
	// The lab's own daemons, to wait for below.
	var pids []int
	for _, f := range []string{l.paths.dockerPID, l.paths.registryPID, filepath.Join(l.paths.run, "registry-auth.pid"), l.paths.mungePID, filepath.Join(l.paths.execRoot, "containerd", "containerd.pid")} {
		if pid, _ := readPID(f); pid > 0 {
			pids = append(pids, pid)
		}
	}
	if l.daemonRunning() {
		keep(l.timed("down: remove host containers", func() error { return l.removeContainers(ctx) }))
		keep(l.timed("down: remove lab network", func() error {
			if _, err := l.dk.out(ctx, "network", "inspect", networkName); err != nil {
				return nil
			}
			_, err := l.dk.out(ctx, "network", "rm", networkName)
			return err
		}))
		keep(l.timed("down: stop lab dockerd", func() error { return l.stopDaemon(ctx) }))
	}
	keep(l.timed("down: stop registry", func() error { return l.StopRegistry(ctx) }))
	keep(l.timed("down: stop authenticated registry", func() error { return l.StopAuthRegistry(ctx) }))
	// A Slurm lab's munged on this machine; its slurmctld and slurmd end
	// with their containers above.
	if pid, _ := readPID(l.paths.mungePID); pid > 0 {
		keep(l.timed("down: stop munged", func() error { return l.stopMachineMunge(ctx) }))
	}
	keep(l.sweep(ctx))
	// Init reaps the stopped daemons (they were detached) a moment later;
	// wait, so that ps right after Down shows none of them, not even as
	// zombies.
	waitReaped(ctx, pids, 10*time.Second)
	// The daemon deletes the bridge with the network; after a crash it may
	// not have. The name carries this lab's ID, so it is ours.
	if _, err := run(ctx, "ip", "link", "show", l.bridgeName()); err == nil {
		_, err := run(ctx, "ip", "link", "delete", l.bridgeName())
		keep(err)
	}
	keep(l.timed("down: remove forwarding rule", func() error { return l.disallowForwarding(ctx) }))
	keep(l.removeCgroups())

	remove := []string{l.paths.run, l.paths.hosts, l.paths.shared, l.paths.keysDir, l.paths.logs,
		l.paths.clusterFile, l.paths.knownHosts, l.paths.state, l.paths.slurm}
	for _, r := range []string{"workload.tmp", "host.tmp"} {
		remove = append(remove, filepath.Join(l.paths.rootfs, r))
	}
	if opt.Purge {
		remove = append(remove, l.paths.cache)
	}
	keep(l.timed("down: remove lab files", func() error {
		var errs []error
		for _, p := range remove {
			if err := removeTree(p); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}))
	if opt.Purge && len(errs) == 0 {
		// The lock file is the last thing in the directory.
		os.Remove(l.paths.lock)
		os.Remove(l.cfg.Dir)
	}
	l.st = state{}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	l.logf("down: done in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// mayHaveContainers reports whether the outer daemon's data root records
// containers (left by a daemon that did not stop cleanly).
func (l *Lab) mayHaveContainers() bool {
	ents, err := os.ReadDir(filepath.Join(l.paths.dataRoot, "containers"))
	return err == nil && len(ents) > 0
}

// sweep kills whatever lab process is still alive after the orderly stop,
// logging each one: it should find nothing, and when it does, that is a bug
// worth seeing.
func (l *Lab) sweep(ctx context.Context) error {
	for round := 0; round < 3; round++ {
		procs := l.lingering()
		if len(procs) == 0 {
			return nil
		}
		pids := make([]int, 0, len(procs))
		for pid := range procs {
			pids = append(pids, pid)
		}
		sort.Ints(pids)
		for _, pid := range pids {
			l.logf("down: killing leftover lab process %d: %s", pid, shortArgv([]string{procs[pid]}))
			syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if procs := l.lingering(); len(procs) > 0 {
		return fmt.Errorf("%d lab processes survived SIGKILL: %v", len(procs), procs)
	}
	return nil
}

// waitReaped waits until none of pids is in the process table, zombies
// included, or until timeout. Only processes already dead are waited for:
// a PID that runs again belongs to someone else by then.
func waitReaped(ctx context.Context, pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for time.Now().Before(deadline) {
			stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || !isZombieStat(stat) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
