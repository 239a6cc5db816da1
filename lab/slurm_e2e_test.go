//go:build e2e

package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

// The Slurm lab, for real: a 3-host lab with Slurm in its own directory and
// subnet, and srun, salloc and sbcast run from this machine against it. It
// needs root, scripts/lab-deps.sh and scripts/slurm-deps.sh:
//
//	go test -tags e2e -count=1 -v -run TestSlurmLab ./lab/
//
// It does not read CVS_LAB_DIR or CVS_LAB_SUBNET: an exported CVS_LAB_DIR
// (eval "$(cvs-lab env)") names a lab someone may be using, and Up would
// recreate it. CVS_SLURM_LAB_DIR (default /var/tmp/cvs-slurm-lab) and
// CVS_SLURM_LAB_SUBNET (default 172.30.0.0/24) place it instead. With
// CVS_SLURM_LAB_REUSE=1 a Slurm lab already up there is used and left up.

const slurmLabHosts = 3

func slurmLabConfig(t *testing.T) lab.Config {
	t.Helper()
	cfg := lab.Config{Dir: "/var/tmp/cvs-slurm-lab", Subnet: netip.MustParsePrefix("172.30.0.0/24"), Log: os.Stderr}
	if d := os.Getenv("CVS_SLURM_LAB_DIR"); d != "" {
		cfg.Dir = d
	}
	if s := os.Getenv("CVS_SLURM_LAB_SUBNET"); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("CVS_SLURM_LAB_SUBNET=%q: %v", s, err)
		}
		cfg.Subnet = p
	}
	if filepath.Clean(cfg.Dir) == lab.DefaultDir {
		t.Fatalf("the Slurm lab test will not use the default lab directory %s", lab.DefaultDir)
	}
	return cfg
}

func TestSlurmLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := slurmLabConfig(t)
	reuse := os.Getenv("CVS_SLURM_LAB_REUSE") == "1"
	var l *lab.Lab
	if reuse {
		if o, err := lab.Open(ctx, cfg); err == nil && o.Slurm() && len(o.Hosts()) >= slurmLabHosts {
			t.Logf("reusing the Slurm lab in %s", o.Dir())
			l = o
		}
	}
	if l == nil {
		var err error
		if l, err = lab.New(cfg); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := l.UpWith(ctx, slurmLabHosts, lab.UpOptions{Slurm: true}); err != nil {
			t.Fatal(err)
		}
		t.Logf("Slurm lab of %d hosts up in %s", slurmLabHosts, time.Since(start).Round(100*time.Millisecond))
		if !reuse {
			t.Cleanup(func() { checkSlurmLabDown(t, l) })
		}
	}
	hosts := l.Hosts()[:slurmLabHosts]
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	slurm := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := l.SlurmCommand(cctx, name, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		t.Logf("$ %s %s  (%s)\n%s%s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return stdout.String()
	}
	sortedLines := func(s string) []string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(lines)
		return lines
	}

	t.Run("env", func(t *testing.T) {
		env := strings.Join(l.SlurmEnv(), "\n")
		if !strings.Contains(env, "SLURM_CONF="+l.SlurmConfFile()) {
			t.Errorf("SlurmEnv = %q", env)
		}
		if _, err := os.Stat(l.MungeSocket()); err != nil {
			t.Errorf("munge socket: %v", err)
		}
	})

	t.Run("sinfo", func(t *testing.T) {
		out := slurm(t, "sinfo", "--noheader", "--Node", "--format", "%N %P %t")
		want := make([]string, len(names))
		for i, n := range names {
			want[i] = n + " " + lab.SlurmPartition + "* idle"
		}
		if got := sortedLines(out); !slices.Equal(got, want) {
			t.Errorf("sinfo: %q, want %q", got, want)
		}
	})

	t.Run("srun -N3 hostname", func(t *testing.T) {
		out := slurm(t, "srun", "-N", strconv.Itoa(len(hosts)), "--chdir=/tmp", "hostname")
		if got := sortedLines(out); !slices.Equal(got, names) {
			t.Errorf("srun hostname printed %q, want %q", got, names)
		}
	})

	t.Run("srun --nodelist", func(t *testing.T) {
		out := slurm(t, "srun", "-N3", "--nodelist="+strings.Join(names, ","), "--chdir=/tmp", "hostname")
		if got := sortedLines(out); !slices.Equal(got, names) {
			t.Errorf("srun --nodelist hostname printed %q, want %q", got, names)
		}
	})

	// A node whose slurmd is gone: srun fails and names it; back in
	// service once slurmd runs again.
	t.Run("slurmd stopped", func(t *testing.T) {
		last := hosts[len(hosts)-1].Name
		if err := l.StopSlurmd(ctx, last); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.StartSlurmd(ctx, last) })
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		start := time.Now()
		out, err := l.SlurmCommand(cctx, "srun", "-N3", "--chdir=/tmp", "hostname").CombinedOutput()
		t.Logf("$ srun -N3 hostname  (slurmd stopped on %s; %s, %v)\n%s", last, time.Since(start).Round(time.Millisecond), err, out)
		if err == nil || !strings.Contains(string(out), "failed on node "+last) {
			t.Errorf("srun with %s's slurmd stopped: %v, want a launch failure naming it", last, err)
		}
		if err := l.StartSlurmd(ctx, last); err != nil {
			t.Fatal(err)
		}
		got := sortedLines(slurm(t, "srun", "-N3", "--chdir=/tmp", "hostname"))
		if !slices.Equal(got, names) {
			t.Errorf("after StartSlurmd: %q, want %q", got, names)
		}
	})

	// A task runs on the host itself: docker there is the host's own
	// daemon (what a srun backend of cvs drives).
	t.Run("srun docker", func(t *testing.T) {
		out := slurm(t, "srun", "-N3", "--chdir=/tmp", "sh", "-c", `echo "$(hostname) $(docker info --format '{{.ID}}')"`)
		ids := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				ids[f[0]] = f[1]
			}
		}
		for _, h := range hosts {
			res, err := l.HostDocker(ctx, h.Name, "info", "--format", "{{.ID}}")
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSpace(res.Stdout); ids[h.Name] != want {
				t.Errorf("%s: srun saw docker ID %q, the host's daemon is %q", h.Name, ids[h.Name], want)
			}
		}
	})

	// salloc gives a real allocation: the job runs on the 3 hosts while the
	// command (here, on this machine) runs.
	t.Run("salloc", func(t *testing.T) {
		out := slurm(t, "salloc", "-N3", "sh", "-c",
			`echo "$SLURM_JOB_NUM_NODES $SLURM_JOB_NODELIST"; squeue --noheader -j "$SLURM_JOB_ID" -o '%T %D'`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || lines[0] != "3 host[1-3]" || lines[1] != "RUNNING 3" {
			t.Errorf("salloc: %q, want 3 host[1-3] / RUNNING 3", lines)
		}
	})

	// sbcast copies a file from this machine to every node of the
	// allocation; srun and, independently, docker exec on each host see
	// the same bytes.
	t.Run("sbcast", func(t *testing.T) {
		data := make([]byte, 4<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		src := filepath.Join(t.TempDir(), "payload")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := "/tmp/cvs-sbcast-" + want[:12]
		out := slurm(t, "salloc", "-N3", "sh", "-c",
			`sbcast --force "$0" "$1" && srun --chdir=/tmp sha256sum "$1"`, src, dst)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(hosts) {
			t.Fatalf("srun sha256sum printed %d lines, want %d: %q", len(lines), len(hosts), out)
		}
		for _, line := range lines {
			if f := strings.Fields(line); len(f) != 2 || f[0] != want || f[1] != dst {
				t.Errorf("on a node: %q, want %s  %s", line, want, dst)
			}
		}
		for _, h := range hosts {
			res, err := l.HostExec(ctx, h.Name, "sha256sum", dst)
			if err != nil {
				t.Errorf("%s: %v", h.Name, err)
				continue
			}
			if f := strings.Fields(res.Stdout); len(f) == 0 || f[0] != want {
				t.Errorf("%s: %s holds %q, want %s", h.Name, dst, res.Stdout, want)
			}
			l.HostExec(ctx, h.Name, "rm", "-f", dst)
		}
	})
}

// slurmProcs lists the lab's processes whose program is munged, slurmd,
// slurmstepd or slurmctld (the lab's hosts and controller are containers
// on this kernel, so theirs are here too; another lab's are not), by PID
// with their command lines.
func slurmProcs(l *lab.Lab) map[string]string {
	procs := map[string]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		pid, _ := strconv.Atoi(e.Name())
		switch filepath.Base(argv[0]) {
		case "munged", "slurmd", "slurmstepd", "slurmctld":
			if l.Owns(pid) { // not another lab's on this machine
				procs[e.Name()] = strings.Join(argv, " ")
			}
		}
	}
	return procs
}

// checkSlurmLabDown takes the lab down and checks that munged, slurmctld and
// slurmd went with it.
func checkSlurmLabDown(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := l.Status(ctx)
	if err != nil {
		t.Errorf("status before down: %v", err)
	}
	before := slurmProcs(l)
	t.Logf("before down: %d munged/slurmd/slurmctld processes of the lab", len(before))
	if len(before) == 0 {
		t.Error("no munged/slurmd/slurmctld process of the lab found before down: the check below would prove nothing")
	}
	if err := l.Down(ctx, lab.DownOptions{}); err != nil {
		t.Errorf("down: %v", err)
		return
	}
	if st.Slurm == nil || !st.Slurm.Munged.Running {
		t.Errorf("status of the Slurm lab before down: %+v, want its munged running", st.Slurm)
	}
	after := slurmProcs(l)
	for pid, cmd := range before {
		if after[pid] == cmd {
			t.Errorf("after down, pid %s still runs: %s", pid, cmd)
		}
	}
	if _, err := os.Stat(l.SlurmConfFile()); err == nil {
		t.Errorf("down left %s", l.SlurmConfFile())
	}
}
