package session

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// pushBySbcast distributes the image through Slurm ([engine] kind =
// "slurm"): one tarball with every layer some node lacks is written here
// once, sbcast copies it to node-local disk on every node of the
// allocation through Slurm's fan-out tree (this machine sends each byte
// once), then each node that needs it docker loads it (an srun step) and
// the file is removed everywhere. Nodes that hold the image are only
// tagged. It returns what was done on each host. With several, other
// images (other platforms') are sent by sbcast in this run too: the file
// is named after the image.
func (s *Session) pushBySbcast(ctx context.Context, stage string, hosts []cluster.Host, saved *images.Saved, several bool) ([]Push, error) {
	pushes := make([]Push, len(hosts))
	missing := make([][]int, len(hosts))
	// What each node lacks.
	err := s.perHost(ctx, stage, hosts, func(ctx context.Context, k int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		p, send, err := s.lacking(ctx, s.dockerOn(h.Name, c), h, saved)
		pushes[k], missing[k] = p, send
		return transport.Result{}, err
	})
	if err != nil {
		return pushes, err
	}
	union := map[int]bool{}
	var need []cluster.Host
	var needIdx []int
	for k := range hosts {
		if pushes[k].Skipped {
			continue
		}
		need, needIdx = append(need, hosts[k]), append(needIdx, k)
		for _, l := range missing[k] {
			union[l] = true
		}
	}
	if len(need) == 0 {
		return pushes, nil
	}
	send := make([]int, 0, len(union))
	for l := range union {
		send = append(send, l)
	}
	sort.Ints(send)
	local, size, done, err := writeDelta(saved, send)
	if err != nil {
		return pushes, &StageError{Stage: stage, Failures: []HostFailure{{Host: ThisMachine, Err: err}}}
	}
	defer done()
	remote := fmt.Sprintf("/var/tmp/cvs-push-%s.tar", s.RunID)
	if several {
		remote = fmt.Sprintf("/var/tmp/cvs-push-%s-%s.tar", s.RunID, images.ShortDigest(saved.ImageID))
	}
	s.log.Info(fmt.Sprintf("sending %d of %d layers (%d bytes) once, to every node of the allocation, with sbcast", len(send), len(saved.LayerFiles), size))
	// Removed from every node it may have reached, also when sbcast fails
	// or is stopped part-way.
	defer s.removeSbcastCopy(ctx, remote)
	// sbcast sends the file once from here; each node loads its own copy.
	limit := pushLimit(size, 1)
	s.logPushLimit(limit, size, 1)
	if err := s.sbcast(ctx, local, remote, limit); err != nil {
		return pushes, &StageError{Stage: stage, Failures: []HostFailure{{Host: ThisMachine, Err: err}}}
	}
	// Load where needed; remove the file from every node it went to.
	err = s.perHost(ctx, stage, need, func(ctx context.Context, k int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		e := docker.CLIEngine{CLI: s.docker, Host: c}
		p := &pushes[needIdx[k]]
		p.Layers, p.Bytes = len(send), size
		if res, err := c.Run(ctx, transport.Command{Line: docker.Line(s.docker.Load(remote))}); err != nil {
			return res, fmt.Errorf("docker load of the sbcast copy: %w", err)
		}
		as := launchName(saved)
		got, err := e.ImageID(ctx, as)
		if err != nil || got != saved.ImageID {
			return transport.Result{}, fmt.Errorf("after docker load, %s is %q, not %s (%v)", as, got, saved.ImageID, err)
		}
		s.log.Info(fmt.Sprintf("image pushed: %d of %d layers, %d bytes (through sbcast)", len(send), len(saved.LayerFiles), size), "host", h.Name)
		return transport.Result{}, nil
	})
	return pushes, err
}

// sbcastCleanupTimeout bounds the removal of the sbcast copy from the
// nodes.
const sbcastCleanupTimeout = time.Minute

// removeSbcastCopy removes remote from every node sbcast may have written
// it to: the allocation's nodes (sbcast sends it to all of them, also to
// those not in hosts) and the hosts, within sbcastCleanupTimeout, even
// after ctx ended. A node where that fails is named in the run's outcome
// (exit 6).
func (s *Session) removeSbcastCopy(ctx context.Context, remote string) {
	nodes := sbcastNodes(s.Config.Hosts, os.Getenv("SLURM_JOB_NODELIST"))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sbcastCleanupTimeout)
	defer cancel()
	errs := s.each(ctx, "", nodes, func(ctx context.Context, _ int, _ cluster.Host, c transport.Conn) error {
		// Removing it again is harmless.
		_, err := c.Run(ctx, transport.Command{Line: shell.Join("rm", "-f", "--", remote), Rerun: true})
		return err
	})
	var left []string
	for i, err := range errs {
		if err != nil {
			left = append(left, nodes[i].Name)
			s.log.Error("could not remove the image's sbcast copy", "host", nodes[i].Name, "file", remote, "err", err)
		}
	}
	if len(left) > 0 {
		s.leftBehind(fmt.Sprintf("the image's sbcast copy %s is LEFT on %s (remove it there: rm -f %s)", remote, cluster.FoldHostList(left), remote))
	}
}

// sbcastNodes is every node an sbcast may reach: the hosts, then the other
// nodes of the allocation (nodelist, in Slurm's hostlist syntax; a list
// that cannot be read adds none).
func sbcastNodes(hosts []cluster.Host, nodelist string) []cluster.Host {
	out := append([]cluster.Host(nil), hosts...)
	seen := map[string]bool{}
	for _, h := range hosts {
		seen[h.Name] = true
	}
	names, _ := cluster.ExpandHostList(nodelist)
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, cluster.Host{Name: n})
		}
	}
	return out
}

// writeDelta writes the tarball with the layers send to a private file
// here; it returns its path and size, and done, which removes it. Until
// then the file is locked, so that cvs image prune leaves it; a killed run
// leaves it unlocked, and prune reclaims it.
func writeDelta(saved *images.Saved, send []int) (path string, size int64, done func(), err error) {
	f, err := images.NewPartial("", images.PushTempPattern)
	if err != nil {
		return "", 0, nil, err
	}
	done = func() {
		os.Remove(f.Name())
		f.Close()
	}
	if err := saved.WriteDelta(f, send); err != nil {
		done()
		return "", 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		done()
		return "", 0, nil, err
	}
	return f.Name(), fi.Size(), done, nil
}

// sbcast copies local to remote on every node of the allocation, within
// limit.
func (s *Session) sbcast(ctx context.Context, local, remote string, limit time.Duration) error {
	bin := "sbcast"
	if srun := s.Config.Engine.Srun; srun != "" {
		bin = filepath.Join(filepath.Dir(srun), "sbcast")
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// --fanout=1: sbcast hands the whole node list to one node, which
	// forwards the file through Slurm's tree, so this machine sends it
	// once (measured on the Slurm lab at 2, 4 and 8 nodes); sbcast's
	// default, 8 threads, sends up to 8 copies from here.
	out, err := exec.CommandContext(ctx, bin, "--fanout=1", "--force", "--preserve", local, remote).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sbcast %s to %s: %v: %s", local, remote, err, report.LastLine(strings.TrimSpace(string(out))))
	}
	return nil
}
