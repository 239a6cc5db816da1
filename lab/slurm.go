package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The Slurm lab (cvs-lab up N --slurm, UpOptions.Slurm).
//
// Every lab host runs munged and slurmd besides its dockerd and sshd; the
// controller, slurmctld (with its own munged), runs in one more container on
// the lab bridge, slurmctl at the subnet's .10 address. This machine is a
// Slurm client: the lab runs a munged here with the lab's key and its socket
// under the lab directory, and writes a client slurm.conf that points Slurm's
// munge plugin at that socket, so srun, salloc and sbcast work from here with
// SLURM_CONF set (SlurmEnv).
//
// Why the controller is a container and not this machine: slurmctld insists
// on running on the host named in SlurmctldHost and listens on all addresses
// of its network namespace, so on the machine it would take port 6817 for the
// whole machine (two Slurm labs, or a real Slurm, would collide) and tie the
// configuration to the machine's hostname. In its own container it has a
// fixed name and address and goes away with the other lab containers.

const (
	// SlurmControllerName is the controller container's hostname, the name
	// in SlurmctldHost.
	SlurmControllerName = "slurmctl"
	// SlurmPartition is the one partition; it holds every lab host and is
	// the default.
	SlurmPartition = "lab"
	// slurmClusterName is Slurm's ClusterName for the lab.
	slurmClusterName = "cvslab"

	hostSlurmImageRepo = "cvs-lab/host-slurm"
	// slurmMount is where hosts and the controller see the lab's Slurm
	// directory (slurm.conf and munge.key), read-only.
	slurmMount = "/etc/cvs-lab-slurm"
)

// slurmPackages go into cvs-lab/host-slurm, on top of the host image.
// slurmctld brings slurm-client (srun, sinfo, scontrol on the nodes too).
var slurmPackages = []string{"slurmd", "slurmctld", "munge"}

// slurmMachineTools are the programs this machine needs to be a client of the
// Slurm lab; scripts/slurm-deps.sh installs them.
var slurmMachineTools = []string{"munged", "munge", "srun", "salloc", "sbcast", "sinfo", "setpriv"}

// UpOptions tune Up.
type UpOptions struct {
	// Slurm adds Slurm to the lab: hosts from the cvs-lab/host-slurm image
	// with munged and slurmd, a slurmctld container, and a munged on this
	// machine, so srun and salloc work from here (see SlurmEnv).
	Slurm bool
}

// slurmState is what Up records about the Slurm side of a lab.
type slurmState struct {
	Controller Host   `json:"controller"`
	Partition  string `json:"partition"`
}

// Slurm reports whether the lab was brought up with Slurm.
func (l *Lab) Slurm() bool { return l.st.Slurm != nil }

// SlurmController returns the controller container (slurmctld); ok is false
// when the lab has no Slurm.
func (l *Lab) SlurmController() (h Host, ok bool) {
	if l.st.Slurm == nil {
		return Host{}, false
	}
	return l.st.Slurm.Controller, true
}

// SlurmConfFile returns the client slurm.conf for this machine: the hosts'
// slurm.conf plus the path of the lab's munge socket here.
func (l *Lab) SlurmConfFile() string { return l.paths.slurmClientConf }

// MungeSocket returns the socket of the lab's munged on this machine (for
// `munge -S`); Slurm's commands find it through SlurmConfFile's AuthInfo.
func (l *Lab) MungeSocket() string { return filepath.Join(l.paths.mungeDir, "munge.socket.2") }

// SlurmEnv returns the environment that makes Slurm's commands on this
// machine (srun, salloc, sbcast, sinfo, scontrol) talk to the lab:
// SLURM_CONF names the client slurm.conf (whose AuthInfo names the lab's
// munge socket: Slurm reads no environment variable for it), and
// CVS_LAB_MUNGE_SOCKET names that socket for munge -S / unmunge -S. It is
// empty when the lab has no Slurm.
func (l *Lab) SlurmEnv() []string {
	if !l.Slurm() {
		return nil
	}
	return l.slurmEnv()
}

func (l *Lab) slurmEnv() []string {
	return []string{
		"SLURM_CONF=" + l.SlurmConfFile(),
		"CVS_LAB_MUNGE_SOCKET=" + l.MungeSocket(),
	}
}

// slurmControllerHost is the controller container: the subnet's .10 address
// (hosts start at .11).
func (l *Lab) slurmControllerHost() Host {
	a := l.cfg.Subnet.Addr()
	for range 10 {
		a = a.Next()
	}
	return Host{Name: SlurmControllerName, Addr: a, Container: containerPrefix + SlurmControllerName}
}

// slurmParams are the lab facts slurm.conf is rendered from.
type slurmParams struct {
	Controller Host
	Hosts      []Host
	// Topology is the hosts' hardware as slurmd -C reports it ("CPUs=2
	// Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"); every
	// host is this machine, so they all have the same.
	Topology string
	// MungeSocket, when set, is written as AuthInfo (the client's copy).
	MungeSocket string
}

// renderSlurmConf returns the lab's slurm.conf. It needs no cgroups (the
// hosts are containers that share the machine's cgroup tree): processes are
// tracked through /proc, tasks are not bound, nothing is accounted. Daemons
// run as root and keep their state, pid and log files inside their own
// container.
func renderSlurmConf(p slurmParams) string {
	var b strings.Builder
	b.WriteString("# slurm.conf of the cvs test lab, written by cvs-lab up --slurm.\n")
	b.WriteString("# The same on the controller and every host")
	if p.MungeSocket != "" {
		b.WriteString("; this copy, for the machine's\n# srun/salloc/sbcast, adds the lab munged's socket (AuthInfo)")
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "ClusterName=%s\n", slurmClusterName)
	fmt.Fprintf(&b, "SlurmctldHost=%s(%s)\n", p.Controller.Name, p.Controller.Addr)
	b.WriteString(`SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
`)
	if p.MungeSocket != "" {
		fmt.Fprintf(&b, "AuthInfo=socket=%s\n", p.MungeSocket)
	}
	b.WriteString(`# No cgroups inside the lab's containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
# Limits of the submitting shell are not raised on the hosts (a container
# may not raise them).
PropagateResourceLimits=NONE
SelectType=select/linear
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
# Messages to many nodes (srun's launch, sbcast's file) go to TreeWidth
# nodes, which forward them: 2 makes the lab's few hosts use forwarding as
# a big cluster does (Slurm's default is 50).
TreeWidth=2
InactiveLimit=0
KillWait=10
MinJobAge=60
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
`)
	names := make([]string, len(p.Hosts))
	for i, h := range p.Hosts {
		names[i] = h.Name
		fmt.Fprintf(&b, "NodeName=%s NodeAddr=%s NodeHostname=%s %s State=UNKNOWN\n", h.Name, h.Addr, h.Name, p.Topology)
	}
	fmt.Fprintf(&b, "PartitionName=%s Nodes=%s Default=YES MaxTime=INFINITE State=UP\n", SlurmPartition, strings.Join(names, ","))
	return b.String()
}

// checkSlurmMachine reports what keeps this machine from being the Slurm
// lab's client.
func checkSlurmMachine() error {
	var missing []string
	for _, t := range slurmMachineTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if _, err := user.Lookup("munge"); err != nil {
		missing = append(missing, "user munge")
	}
	if len(missing) > 0 {
		return errors.New("cannot run the Slurm lab on this machine: missing " + strings.Join(missing, ", ") + " (run scripts/slurm-deps.sh)")
	}
	return nil
}

// writeMungeKey writes a new munge key for the lab, in the directory that
// hosts and controller mount.
func (l *Lab) writeMungeKey() error {
	if err := removeTree(l.paths.slurm); err != nil {
		return err
	}
	if err := os.MkdirAll(l.paths.slurmEtc, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.paths.slurmClientConf), 0o755); err != nil {
		return err
	}
	// One key per lab, as mungekey makes (1024 bits would do; munge
	// accepts 32 bytes to 1 MiB).
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.paths.slurmEtc, "munge.key"), key, 0o400)
}

// slurmTopologyKeys are the slurmd -C fields slurm.conf repeats.
var slurmTopologyKeys = []string{"CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"}

// parseSlurmdC picks the hardware fields out of slurmd -C's first line.
func parseSlurmdC(out string) (string, error) {
	line, _, _ := strings.Cut(out, "\n")
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	var parts []string
	for _, k := range slurmTopologyKeys {
		v, ok := fields[k]
		if _, err := strconv.Atoi(v); !ok || err != nil {
			return "", fmt.Errorf("slurmd -C: no number for %s in %q", k, line)
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " "), nil
}

// writeSlurmConf writes the hosts' slurm.conf and this machine's copy, with
// the topology slurmd -C reports on the first host.
func (l *Lab) writeSlurmConf(ctx context.Context, hosts []Host, ctl Host) error {
	res, err := l.dk.exec(ctx, hosts[0], nil, "slurmd", "-C")
	if err != nil {
		return err
	}
	topo, err := parseSlurmdC(res.Stdout)
	if err != nil {
		return err
	}
	p := slurmParams{Controller: ctl, Hosts: hosts, Topology: topo}
	if err := writeFileAtomic(filepath.Join(l.paths.slurmEtc, "slurm.conf"), []byte(renderSlurmConf(p)), 0o644); err != nil {
		return err
	}
	p.MungeSocket = l.MungeSocket()
	return writeFileAtomic(l.paths.slurmClientConf, []byte(renderSlurmConf(p)), 0o644)
}

// slurmContainerArgs are the docker run options a Slurm lab adds to every
// container (hosts and controller): the Slurm directory and names for the
// controller and this machine.
func (l *Lab) slurmContainerArgs(ctl Host, hosts []Host) []string {
	args := []string{
		"--volume", l.paths.slurmEtc + ":" + slurmMount + ":ro",
		"--add-host", ctl.Name + ":" + ctl.Addr.String(),
	}
	// srun and salloc from this machine present its hostname; let the
	// nodes resolve it to the machine's side of the bridge.
	hn, err := os.Hostname()
	taken := hn == ctl.Name
	for _, h := range hosts {
		taken = taken || hn == h.Name
	}
	if err == nil && validHostname(hn) && !taken {
		args = append(args, "--add-host", hn+":"+l.Gateway().String())
	}
	return args
}

func validHostname(s string) bool {
	if s == "" || s == "localhost" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// runSlurmController creates and starts the controller container. It runs
// no dockerd and no sshd, only munged and slurmctld (started by startSlurm).
func (l *Lab) runSlurmController(ctx context.Context, ctl Host, hosts []Host, set imageSet) error {
	args := []string{
		"run", "--detach",
		"--name", ctl.Container,
		"--hostname", ctl.Name,
		"--label", labelRole + "=slurmctl",
		"--network", networkName,
		"--ip", ctl.Addr.String(),
		"--init",
		// To drop the default route, as the hosts do.
		"--cap-add", "NET_ADMIN",
		"--tmpfs", "/run",
		"--tmpfs", "/tmp",
		"--dns", "127.0.0.1",
	}
	args = append(args, l.slurmContainerArgs(ctl, hosts)...)
	for _, h := range hosts {
		args = append(args, "--add-host", h.Name+":"+h.Addr.String())
	}
	args = append(args, set.hostSlurm, "sh", "-c", "ip route del default 2>/dev/null; exec sleep infinity")
	if _, err := l.dk.out(ctx, args...); err != nil {
		return fmt.Errorf("%s: start its container: %w", ctl.Name, err)
	}
	return nil
}

// slurmSvc runs cvs-lab-slurm in a container (a host or the controller).
func (l *Lab) slurmSvc(ctx context.Context, h Host, service, action string) error {
	if _, err := l.dk.exec(ctx, h, nil, "cvs-lab-slurm", service, action); err != nil {
		return fmt.Errorf("%s %s: %w", service, action, err)
	}
	return nil
}

// startSlurm writes slurm.conf, starts munged and slurmctld on the controller, munged and
// slurmd on every host, and this machine's munged, then waits until every
// host is idle in sinfo as seen from this machine (which proves the
// machine's munge key and socket too).
func (l *Lab) startSlurm(ctx context.Context, ctl Host, hosts []Host) error {
	if err := l.writeSlurmConf(ctx, hosts, ctl); err != nil {
		return err
	}
	for _, svc := range []string{"munged", "slurmctld"} {
		if err := l.slurmSvc(ctx, ctl, svc, "start"); err != nil {
			return err
		}
	}
	err := eachHost(ctx, hosts, func(ctx context.Context, h Host) error {
		for _, svc := range []string{"munged", "slurmd"} {
			if err := l.slurmSvc(ctx, h, svc, "start"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := l.startMachineMunge(ctx); err != nil {
		return err
	}
	return l.waitSlurmNodes(ctx, hosts, 90*time.Second)
}

// SlurmCommand returns an exec.Cmd that runs a Slurm command (srun, salloc,
// sbcast, sinfo, ...) on this machine against the lab: the process's
// environment without any SLURM_* variable (of an allocation the caller may
// be in), plus SlurmEnv. On a lab without Slurm the command fails: it finds
// no slurm.conf.
func (l *Lab) SlurmCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLURM_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, l.slurmEnv()...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// waitSlurmNodes polls sinfo until every host is idle.
func (l *Lab) waitSlurmNodes(ctx context.Context, hosts []Host, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := l.SlurmCommand(pctx, "sinfo", "--noheader", "--Node", "--format", "%N %t").CombinedOutput()
		pcancel()
		last = strings.TrimSpace(string(out))
		if err == nil {
			idle := map[string]bool{}
			for _, line := range strings.Split(last, "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[1] == "idle" {
					idle[f[0]] = true
				}
			}
			all := true
			for _, h := range hosts {
				all = all && idle[h.Name]
			}
			if all {
				return nil
			}
		} else {
			last = fmt.Sprintf("%v: %s", err, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("slurm nodes not all idle after %s; sinfo: %s (look at cvs-lab exec %s -- tail /var/log/slurm/slurmctld.log, and /var/log/slurm/slurmd.log on the hosts)",
				timeout, last, SlurmControllerName)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startMachineMunge starts this machine's munged for the lab: the lab's key,
// socket, pid and seed files in run/munge, as the munge user (munged refuses
// a key that its own user does not own), in the foreground of a detached
// session so its PID is the one recorded.
func (l *Lab) startMachineMunge(ctx context.Context) error {
	if l.machineMungeRunning() {
		return nil
	}
	u, err := user.Lookup("munge")
	if err != nil {
		return fmt.Errorf("user munge: %w (run scripts/slurm-deps.sh)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := l.paths.mungeDir
	if err := removeTree(dir); err != nil {
		return err
	}
	// munged wants its socket directory searchable by everyone and
	// writable only by itself.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(l.paths.slurmEtc, "munge.key"))
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, "munge.key")
	if err := os.WriteFile(keyPath, key, 0o400); err != nil {
		return err
	}
	for _, p := range []string{dir, keyPath} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	logPath := filepath.Join(l.paths.logs, "munged.log")
	err = startDetached(ctx, l.paths.mungePID, logPath,
		"setpriv", "--reuid=munge", "--regid=munge", "--init-groups",
		"munged", "--foreground",
		"--socket="+l.MungeSocket(),
		"--key-file="+keyPath,
		"--pid-file="+filepath.Join(dir, "munged.pid"),
		"--seed-file="+filepath.Join(dir, "munged.seed"))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if isSocket(l.MungeSocket()) {
			enc := exec.CommandContext(ctx, "munge", "--socket="+l.MungeSocket(), "--no-input")
			if out, err := enc.Output(); err == nil && len(out) > 0 {
				return nil
			}
		}
		if pid, _ := readPID(l.paths.mungePID); pid > 0 && processGone(pid) {
			return fmt.Errorf("munged exited: %s", tailFile(logPath, 800))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("munged on %s does not answer: %s", l.MungeSocket(), tailFile(logPath, 800))
}

func isSocket(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

func (l *Lab) machineMungeRunning() bool {
	pid, _ := readPID(l.paths.mungePID)
	return procAlive(pid, l.paths.mungeDir)
}

// stopMachineMunge stops this machine's munged of the lab, by its recorded
// PID (and only if that process still names the lab's munge directory).
func (l *Lab) stopMachineMunge(ctx context.Context) error {
	pid, _ := readPID(l.paths.mungePID)
	if err := stopPID(ctx, pid, l.paths.mungeDir, 10*time.Second); err != nil {
		return fmt.Errorf("stop the lab's munged: %w", err)
	}
	os.Remove(l.paths.mungePID)
	return nil
}

// buildHostSlurm derives cvs-lab/host-slurm from the host image: a build
// container on the outer daemon (machine network, for the Debian mirror)
// runs slurm-build.sh and is committed with the host image's CMD.
func (l *Lab) buildHostSlurm(ctx context.Context, set imageSet) error {
	const script = "/tmp/cvs-lab-slurm-build.sh"
	args := append([]string{"create", "--label", labelRole + "=build", "--network", "host",
		set.host, "/bin/sh", script}, slurmPackages...)
	id, err := l.dk.out(ctx, args...)
	if err != nil {
		return err
	}
	defer l.dk.out(context.WithoutCancel(ctx), "rm", "-f", id)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name, recipe string
	}{{strings.TrimPrefix(script, "/"), "slurm-build.sh"}, {"usr/local/sbin/cvs-lab-slurm", "cvs-lab-slurm"}} {
		body := recipe(f.recipe)
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	if _, err := (command{argv: l.dk.argv("cp", "-", id+":/"), stdin: &buf}).run(ctx); err != nil {
		return err
	}
	if _, err := (command{argv: l.dk.argv("start", "--attach", id), logPath: l.buildLog()}).run(ctx); err != nil {
		return fmt.Errorf("install %s into the host image: %w", strings.Join(slurmPackages, " "), err)
	}
	_, err = l.dk.out(ctx, "commit", "--change", `CMD ["/usr/local/sbin/cvs-lab-init"]`, id, set.hostSlurm)
	return err
}

// SlurmStatus is the Slurm side of a lab as probed now.
type SlurmStatus struct {
	Controller Host `json:"controller"`
	// ControllerState is the controller container's state (running, ...,
	// missing).
	ControllerState string `json:"controller_state"`
	// Munged is this machine's munged of the lab.
	Munged ProcStatus `json:"munged"`
	// Nodes maps each node to its sinfo state (idle, alloc, down, ...), as
	// this machine's sinfo sees it; empty when sinfo fails.
	Nodes map[string]string `json:"nodes,omitempty"`
	// Error is why sinfo failed.
	Error string `json:"error,omitempty"`
}

func (l *Lab) slurmStatus(ctx context.Context, recorded state) *SlurmStatus {
	if recorded.Slurm == nil {
		return nil
	}
	ss := &SlurmStatus{Controller: recorded.Slurm.Controller, ControllerState: "missing"}
	ss.Munged.PID, _ = readPID(l.paths.mungePID)
	ss.Munged.Running = procAlive(ss.Munged.PID, l.paths.mungeDir)
	if s, err := l.dk.out(ctx, "inspect", "--format", "{{.State.Status}}", ss.Controller.Container); err == nil {
		ss.ControllerState = s
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := l.SlurmCommand(pctx, "sinfo", "--noheader", "--Node", "--format", "%N %t").CombinedOutput()
	if err != nil {
		ss.Error = fmt.Sprintf("sinfo: %v: %s", err, tail(string(out), 300))
		return ss
	}
	ss.Nodes = map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			ss.Nodes[f[0]] = f[1]
		}
	}
	return ss
}

// StopSlurmd stops host's slurmd; munged, sshd and dockerd go on. The node
// stays idle for slurmctld until SlurmdTimeout (30 s; it is "down*, Not
// responding" about 50 s after the stop), so a step that includes it is
// still allocated and fails to launch there ("Task launch for StepId=...
// failed on node host3: Communication connection failure", after about 10
// s). StartSlurmd undoes it.
func (l *Lab) StopSlurmd(ctx context.Context, host string) error {
	h, err := l.slurmHost(host)
	if err != nil {
		return err
	}
	return l.slurmSvc(ctx, h, "slurmd", "stop")
}

// StartSlurmd starts host's slurmd again and returns when sinfo on this
// machine shows the node idle (ReturnToService=2 returns a node that was
// down for not responding as soon as its slurmd registers).
func (l *Lab) StartSlurmd(ctx context.Context, host string) error {
	h, err := l.slurmHost(host)
	if err != nil {
		return err
	}
	if err := l.slurmSvc(ctx, h, "slurmd", "start"); err != nil {
		return err
	}
	return l.waitSlurmNodes(ctx, []Host{h}, 90*time.Second)
}

// slurmHost finds a host of a Slurm lab.
func (l *Lab) slurmHost(host string) (Host, error) {
	if !l.Slurm() {
		return Host{}, fmt.Errorf("lab %s has no Slurm (cvs-lab up N --slurm)", l.cfg.Dir)
	}
	return l.Host(host)
}
