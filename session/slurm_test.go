package session

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/internal/fakehost"
	"github.com/cvs-tool/cvs/internal/fakeslurm"
	"github.com/cvs-tool/cvs/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// With [engine] kind = "slurm", every per-host command is an srun task on
// that node, and the same command on every node is one srun with a task
// per node: here an srun that records its nodes and runs the tasks on
// this machine. (On real nodes: the Slurm lab.)
func TestSlurmEngineRunsEachHostAsAnSrunTask(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePerRun)
	bin, log := fakeslurm.Srun(t)
	r.cfg.Engine = cluster.Engine{Kind: cluster.EngineSlurm, Srun: bin}
	r.opts.Dial = nil
	t.Setenv("SLURM_JOB_ID", "")
	if _, err := Exec(context.Background(), r.cfg, ExecRequest{Hosts: r.cfg.Hosts, Argv: []string{"true"}, Timeout: time.Minute}, r.opts); err == nil || !strings.Contains(err.Error(), "salloc") {
		t.Fatalf("outside an allocation: %v", err)
	}
	t.Setenv("SLURM_JOB_ID", "7")
	rep, err := Exec(context.Background(), r.cfg, ExecRequest{Hosts: r.cfg.Hosts, Argv: []string{"echo", "it's here"}, Timeout: time.Minute}, r.opts)
	if err != nil || len(rep.Hosts) != 3 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, h := range rep.Hosts {
		if h.ExitCode != 0 || h.Stdout != "it's here\n" {
			t.Errorf("%s: %+v", h.Host, h)
		}
	}
	b, _ := os.ReadFile(log)
	if calls := strings.Fields(string(b)); len(calls) != 1 || calls[0] != "10.9.0.1,10.9.0.2,10.9.0.3" {
		t.Errorf("srun calls, by node list: %q; want one for the 3 nodes", calls)
	}
}

// The sbcast copy of the image reaches every node of the allocation, also
// those not in hosts, and may be there even when sbcast fails part-way:
// it is removed from all of them, within a time limit, and a node where
// that fails is named (exit 6).
func TestSbcastCopyRemovedFromEveryNode(t *testing.T) {
	host := testRegistry(t)
	ref := host + "/team/img:1"
	img, _ := random.Image(64<<10, 1)
	rr, _ := name.ParseReference(ref)
	if err := remote.Write(rr, img); err != nil {
		t.Fatal(err)
	}
	for _, failRm := range []bool{false, true} {
		t.Run(fmt.Sprintf("rm fails %t", failRm), func(t *testing.T) {
			r := newRig(t, 2, cluster.LifetimePerRun)
			r.cfg.Container.Image, r.cfg.Container.ConfiguredImage, r.cfg.Container.Distribute = ref, ref, cluster.DistributePush
			r.opts.ImageCache = &images.Cache{Dir: t.TempDir()}
			for _, h := range r.hosts {
				h.Images = map[string]string{}
			}
			// An sbcast that fails part-way.
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "sbcast"), []byte("#!/bin/sh\necho 'sbcast: error: REQUEST_FILE_BCAST(spare1): Connection timed out' >&2\nexit 1\n"), 0o755)
			r.cfg.Engine = cluster.Engine{Kind: cluster.EngineSlurm, Srun: filepath.Join(dir, "srun")}
			t.Setenv("SLURM_JOB_NODELIST", "10.9.0.[1-2],spare1")
			spare := fakehost.New("spare1", testImage, testImageID)
			dial := r.opts.Dial
			r.opts.Dial = func(ctx context.Context, h cluster.Host) (transport.Conn, error) {
				if h.Name == "spare1" {
					return spare, nil
				}
				return dial(ctx, h)
			}
			if failRm {
				r.hosts[1].FailRemoveFile = "rm: cannot remove: Input/output error"
			}
			_, err := Run(context.Background(), r.cfg, r.suite(t, "install"), false, r.opts)
			for _, h := range append(r.hosts, spare) {
				removed := false
				for _, l := range h.Lines() {
					removed = removed || strings.HasPrefix(l, "rm -f -- /var/tmp/cvs-push-")
				}
				if !removed {
					t.Errorf("%s: the sbcast copy was not removed: %q", h.Name, h.Lines())
				}
			}
			switch code := exitcode.Of(err); {
			case failRm && (code != exitcode.Cleanup || !regexp.MustCompile(`/var/tmp/cvs-push-\S+\.tar.* on 10\.9\.0\.2`).MatchString(err.Error())):
				t.Errorf("exit %d, want 6 naming the file and 10.9.0.2: %v", code, err)
			case !failRm && (code != exitcode.Partial || !strings.Contains(err.Error(), "Connection timed out")):
				t.Errorf("exit %d, want 4 with sbcast's error: %v", code, err)
			}
		})
	}
}
