package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
)

func TestMedian(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * s}, 3 * s},
		{[]time.Duration{5 * s, 1 * s, 3 * s}, 3 * s},
		{[]time.Duration{4 * s, 1 * s, 2 * s, 3 * s}, 2500 * time.Millisecond},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine("/usr/bin/pdsh", []string{"-w", "^/x/hosts", "true"}, []string{"PDSH_SSH_ARGS=-F /x/cfg -l%u %h"})
	want := `PDSH_SSH_ARGS='-F /x/cfg -l%u %h' /usr/bin/pdsh -w '^/x/hosts' true`
	if got != want {
		t.Errorf("commandLine = %s\nwant          %s", got, want)
	}
}

func TestLabel(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"pdsh -f N", "pdsh -f 50"},
		{"pdsh (default fanout 32)", "pdsh (default fanout 32)"},
		{"cvs status", "cvs status"},
	} {
		if got := (tool{Name: tc.name}).label(50); got != tc.want {
			t.Errorf("label(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTargets(t *testing.T) {
	runs := func(wall time.Duration, hs int) []sample {
		return []sample{{Wall: wall, Handshakes: hs}, {Wall: wall, Handshakes: hs}, {Wall: wall, Handshakes: hs}}
	}
	ms := time.Millisecond
	r := result{N: 50, Rows: []row{
		{Tool: tool{Name: nameCVSExec, Bin: "cvs"}, Label: nameCVSExec, Samples: runs(600*ms, 50)},
		{Tool: tool{Name: nameCVSStatus, Bin: "cvs"}, Label: nameCVSStatus, Samples: runs(1000*ms, 50)},
		{Tool: tool{Name: "pdsh -f N", Bin: "pdsh"}, Label: "pdsh -f 50", Samples: runs(3000*ms, 50)},
		{Tool: tool{Name: "ref", Bin: "pdsh", Ref: true}, Label: "ref", Samples: runs(100*ms, 50)},
	}}
	got := strings.Join(targets([]result{r}, false), "\n")
	if api := strings.Join(targets([]result{r}, true), "\n"); !strings.Contains(api, "within 1.2× of cvs exec") {
		t.Errorf("through the API the status target is 1.2×:\n%s", api)
	}
	for _, want := range []string{
		"faster than every baseline: **met** (next best: pdsh -f 50 3.000 s)",
		"1.67× (1.000 s vs 0.600 s): **missed**",
		"cvs exec -- true handshakes per run == N: 50: **met**",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets lack %q:\n%s", want, got)
		}
	}
}

// TestClusterFileLoads keeps the generated cluster file in step with the
// strict loader: an unknown or renamed key would make every cvs row of
// the benchmark fail.
func TestClusterFileLoads(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "client_ed25519")
	kh := filepath.Join(dir, "known_hosts")
	for _, p := range []string{key, kh} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	farm := &sshdfarm.Farm{User: "root", ClientKey: key, KnownHosts: kh, Hosts: []sshdfarm.Host{
		{Addr: "127.0.10.1", Port: 2222}, {Addr: "127.0.10.2", Port: 2222},
	}}
	s := &setup{N: 2, Farm: farm, Dir: dir}
	if err := writeSetupFiles(s); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.LoadWith(s.ClusterFile, cluster.LoadOptions{SSHConfig: "none"}); err != nil {
		t.Fatalf("generated cluster file does not load:\n%v", err)
	}
}
