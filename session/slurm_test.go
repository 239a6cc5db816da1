package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
)

// With [engine] kind = "slurm", every per-host command is an srun task on
// that node: here an srun that records its node and runs the task on this
// machine. (On real nodes: the Slurm lab.)
func TestSlurmEngineRunsEachHostAsAnSrunTask(t *testing.T) {
	r := newRig(t, 3, cluster.LifetimePerRun)
	dir := t.TempDir()
	log := filepath.Join(dir, "nodes")
	bin := filepath.Join(dir, "srun")
	script := "#!/bin/sh\nfor a; do case \"$a\" in --nodelist=*) echo \"${a#--nodelist=}\" >> " + log + ";; --*) ;; *) break;; esac; shift; done\nexec \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
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
	nodes := strings.Fields(string(b))
	if len(nodes) != 3 || !strings.Contains(string(b), "10.9.0.1") || !strings.Contains(string(b), "10.9.0.3") {
		t.Errorf("srun was asked for nodes %q", nodes)
	}
}
