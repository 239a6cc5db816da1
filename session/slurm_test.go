package session

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/internal/fakeslurm"
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
