package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotUp is returned (wrapped) by Open and by operations that need a
// running lab when there is none.
var ErrNotUp = errors.New("lab is not up (run: cvs-lab up)")

// Host is one lab host.
type Host struct {
	// Name is the host's short name and hostname: host1, host2, ...
	Name string `json:"name"`
	// Addr is the host's address on the lab bridge; cvs reaches its sshd on
	// port 22 there.
	Addr netip.Addr `json:"addr"`
	// Container is the host's container name on the lab's outer daemon.
	Container string `json:"container"`
}

// Lab is a handle on the lab that lives in one directory. Up and Down take a
// file lock, so two processes cannot change the same lab at once; they must
// not run concurrently with other methods on the same *Lab. All other methods
// (HostExec, SSH, the faults, Status, ...) are safe to call from several
// goroutines, on different hosts at once.
type Lab struct {
	cfg   Config
	id    string // short hash of cfg.Dir: keeps bridge and cgroup names of two labs apart
	paths paths
	dk    docker

	// st is what Up recorded; Open loads it. Hosts never change between Up
	// and Down, so it is read without a lock after that.
	st state
}

// state is the part of a lab that is not derived from Config; it is saved as
// JSON in the lab directory so that other processes can Open the lab.
type state struct {
	Subnet    string `json:"subnet"`
	Hosts     []Host `json:"hosts"`
	Workload  string `json:"workload_image"`
	Workload2 string `json:"workload2_image"`
	Started   string `json:"started"`
	// Slurm is set when Up brought Slurm up too.
	Slurm *slurmState `json:"slurm,omitempty"`
}

// paths are the files and directories of a lab, all under Config.Dir.
type paths struct {
	dir          string
	state        string
	lock         string
	clusterFile  string
	knownHosts   string
	keysDir      string
	identity     string
	authorized   string
	run          string // sockets, PID files and config of the lab's processes
	dockerSock   string
	dockerPID    string
	execRoot     string
	registryPID  string
	registryConf string
	logs         string
	hosts        string // per-host inner /var/lib/docker
	shared       string // one folder every host mounts at SharedPath
	cache        string // kept across Down, removed by Down with Purge
	dataRoot     string // outer daemon's data root: the imported lab images
	rootfs       string // debootstrap trees
	aptRepos     string
	registryData string
	// The Slurm lab: slurm holds slurmEtc (slurm.conf and munge.key, which
	// hosts and controller mount) and the client slurm.conf; this
	// machine's munged keeps key, socket and seed in mungeDir.
	slurm           string
	slurmEtc        string
	slurmClientConf string
	slurmCluster    string
	mungeDir        string
	mungePID        string
}

func newPaths(dir string) paths {
	run := filepath.Join(dir, "run")
	cache := filepath.Join(dir, "cache")
	keys := filepath.Join(dir, "keys")
	return paths{
		dir:          dir,
		state:        filepath.Join(dir, "state.json"),
		lock:         filepath.Join(dir, ".lock"),
		clusterFile:  filepath.Join(dir, "cluster.toml"),
		knownHosts:   filepath.Join(dir, "known_hosts"),
		keysDir:      keys,
		identity:     filepath.Join(keys, "id_ed25519"),
		authorized:   filepath.Join(keys, "authorized_keys"),
		run:          run,
		dockerSock:   filepath.Join(run, "docker.sock"),
		dockerPID:    filepath.Join(run, "dockerd.pid"),
		execRoot:     filepath.Join(run, "exec"),
		registryPID:  filepath.Join(run, "registry.pid"),
		registryConf: filepath.Join(run, "registry.yml"),
		logs:         filepath.Join(dir, "logs"),
		hosts:        filepath.Join(dir, "hosts"),
		shared:       filepath.Join(dir, "shared"),
		cache:        cache,
		dataRoot:     filepath.Join(cache, "docker"),
		rootfs:       filepath.Join(cache, "rootfs"),
		aptRepos:     filepath.Join(cache, "apt"),
		registryData: filepath.Join(cache, "registry"),

		slurm:           filepath.Join(dir, "slurm"),
		slurmEtc:        filepath.Join(dir, "slurm", "etc"),
		slurmClientConf: filepath.Join(dir, "slurm", "client", "slurm.conf"),
		slurmCluster:    filepath.Join(dir, "slurm", "cluster.toml"),
		mungeDir:        filepath.Join(run, "munge"),
		mungePID:        filepath.Join(run, "munged.pid"),
	}
}

// New returns a handle on the lab described by cfg. It creates nothing: call
// Up to create the lab or Open to attach to a running one. Its one side
// effect is on this process's PATH, which gets /usr/local/sbin, /usr/sbin and
// /sbin if it lacks them: dockerd, runc, tc and debootstrap live there, and
// a non-login root shell (or CI) may not have them on PATH.
func New(cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ensureSbinPath()
	sum := sha256.Sum256([]byte(cfg.Dir))
	p := newPaths(cfg.Dir)
	return &Lab{
		cfg:   cfg,
		id:    hex.EncodeToString(sum[:])[:6],
		paths: p,
		dk:    newDocker(p.dockerSock),
	}, nil
}

// Open attaches to the lab that Up left running in cfg.Dir. It fails with an
// error wrapping ErrNotUp when there is no such lab or its daemon is gone.
func Open(ctx context.Context, cfg Config) (*Lab, error) {
	l, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := l.load(); err != nil {
		return nil, err
	}
	if !l.daemonRunning() {
		return nil, fmt.Errorf("lab %s: its dockerd is not running: %w", l.cfg.Dir, ErrNotUp)
	}
	if _, err := l.dk.out(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return nil, fmt.Errorf("lab %s: its dockerd does not answer (%v): %w", l.cfg.Dir, err, ErrNotUp)
	}
	return l, nil
}

// OpenAtLeast attaches to the lab that is up when it has at least n hosts,
// else brings one of n hosts up (for the benchmarks). logf, when set, says
// so.
func OpenAtLeast(ctx context.Context, cfg Config, n int, logf func(format string, args ...any)) (*Lab, error) {
	if l, err := Open(ctx, cfg); err == nil && len(l.Hosts()) >= n {
		return l, nil
	}
	l, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if logf != nil {
		logf("bringing up a lab of %d hosts", n)
	}
	if err := l.Up(ctx, n); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Lab) load() error {
	st, err := l.readState()
	if err != nil {
		return err
	}
	l.st = st
	return nil
}

// readState reads what Up recorded, without touching l.
func (l *Lab) readState() (state, error) {
	var st state
	b, err := os.ReadFile(l.paths.state)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("lab %s: %w", l.cfg.Dir, ErrNotUp)
	}
	if err != nil {
		return st, fmt.Errorf("lab %s: %w", l.cfg.Dir, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab state %s is corrupt (%v); run cvs-lab down, then up", l.paths.state, err)
	}
	return st, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l.st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(l.paths.state, append(b, '\n'), 0o644)
}

// Dir returns the lab directory.
func (l *Lab) Dir() string { return l.cfg.Dir }

// Hosts returns the lab's hosts in order (host1 first). It is empty before
// Up or Open.
func (l *Lab) Hosts() []Host { return append([]Host(nil), l.st.Hosts...) }

// Host finds a host by name (host2), address (172.29.0.12) or container
// name (cvs-lab-host2).
func (l *Lab) Host(ref string) (Host, error) {
	for _, h := range l.st.Hosts {
		if ref == h.Name || ref == h.Addr.String() || ref == h.Container {
			return h, nil
		}
	}
	names := make([]string, len(l.st.Hosts))
	for i, h := range l.st.Hosts {
		names[i] = h.Name
	}
	if len(names) == 0 {
		return Host{}, fmt.Errorf("host %q: %w", ref, ErrNotUp)
	}
	return Host{}, fmt.Errorf("no lab host %q (hosts: %s)", ref, strings.Join(names, ", "))
}

// ClusterFile returns the path of the cluster file Up writes.
func (l *Lab) ClusterFile() string { return l.paths.clusterFile }

// SlurmClusterFile returns the cluster file that reaches a Slurm lab's
// hosts through srun ([engine] kind = "slurm", hosts by node name); "" when
// the lab has no Slurm.
func (l *Lab) SlurmClusterFile() string {
	if !l.Slurm() {
		return ""
	}
	return l.paths.slurmCluster
}

// KnownHostsFile returns the path of the known_hosts file holding the hosts'
// host keys as read at Up (or at the last RefreshKnownHosts).
func (l *Lab) KnownHostsFile() string { return l.paths.knownHosts }

// IdentityFile returns the private key every lab host accepts for root.
func (l *Lab) IdentityFile() string { return l.paths.identity }

// Gateway returns the machine's address on the lab bridge.
func (l *Lab) Gateway() netip.Addr { return l.cfg.Subnet.Addr().Next() }

// Registry returns the registry's host:port, as image references use it.
func (l *Lab) Registry() string { return l.Gateway().String() + ":" + strconv.Itoa(registryPort) }

// WorkloadImage returns the registry reference of the workload image (a
// Debian minbase without sshd whose apt sources point only at the lab's
// local repository).
func (l *Lab) WorkloadImage() string { return l.Registry() + "/" + workloadRepo + ":1" }

// WorkloadImage2 returns a second workload image, identical to WorkloadImage
// but for the content of /etc/cvs-lab-workload, so it has another image ID.
func (l *Lab) WorkloadImage2() string { return l.Registry() + "/" + workloadRepo + ":2" }

// AptRepoPath is where each host sees the local apt repository (read-only);
// a workload container started with -v AptRepoPath:/cvs-apt:ro can
// apt-get install openssh-server without internet.
const AptRepoPath = "/srv/cvs-apt"

// SharedPath is where every host mounts one folder of this machine
// (read-write, the lab's shared/): the lab's stand-in for the NFS mount of
// a real cluster (home folders, a shared image store), so that a test can
// make hosts share what real sites share.
const SharedPath = "/srv/cvs-shared"

// Env returns the lab's settings as NAME=value pairs, for a shell (cvs-lab
// env) or a child process; a Slurm lab adds SlurmEnv.
func (l *Lab) Env() []string {
	addrs := make([]string, len(l.st.Hosts))
	for i, h := range l.st.Hosts {
		addrs[i] = h.Addr.String()
	}
	return append([]string{
		EnvDir + "=" + l.cfg.Dir,
		"CVS_CLUSTER=" + l.paths.clusterFile,
		"CVS_LAB_KNOWN_HOSTS=" + l.paths.knownHosts,
		"CVS_LAB_IDENTITY=" + l.paths.identity,
		"CVS_LAB_REGISTRY=" + l.Registry(),
		"CVS_LAB_IMAGE=" + l.WorkloadImage(),
		"CVS_LAB_IMAGE2=" + l.WorkloadImage2(),
		"CVS_LAB_HOSTS=" + strings.Join(addrs, " "),
		"CVS_LAB_DOCKER_HOST=unix://" + l.paths.dockerSock,
	}, l.SlurmEnv()...)
}

// hostAt returns host i (1-based) of the lab.
func (l *Lab) hostAt(i int) Host {
	a := l.cfg.Subnet.Addr()
	for range 10 + i {
		a = a.Next()
	}
	name := "host" + strconv.Itoa(i)
	return Host{Name: name, Addr: a, Container: containerPrefix + name}
}

// bridgeName is the lab bridge's interface name on the machine (at most 15
// bytes); the lab ID keeps two labs in different directories apart.
func (l *Lab) bridgeName() string { return "cvslab-" + l.id }

// Bridge is the name of the lab's bridge on this machine.
func (l *Lab) Bridge() string { return l.bridgeName() }

// cgroupParent is the outer daemon's cgroup parent; the inner daemons use
// cgroupParent()+"-"+host name, so no two daemons share a cgroup.
func (l *Lab) cgroupParent() string { return "cvs-lab-" + l.id }

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.cfg.Log, "cvs-lab: "+format+"\n", args...)
}

// lock takes the lab's file lock for a change (Up, Down) and returns its
// release. It fails at once if another process holds it, rather than queue
// behind an Up that may take minutes.
func (l *Lab) lock() (func(), error) {
	if err := os.MkdirAll(l.cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(l.paths.lock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab %s is busy: another cvs-lab up/down holds %s", l.cfg.Dir, l.paths.lock)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// timed runs fn and logs its duration under title.
func (l *Lab) timed(title string, fn func() error) error {
	start := time.Now()
	err := fn()
	d := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		l.logf("%-34s failed after %s", title, d)
		return err
	}
	l.logf("%-34s %6s", title, d)
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var sbinOnce sync.Once

func ensureSbinPath() {
	sbinOnce.Do(func() {
		path := os.Getenv("PATH")
		dirs := filepath.SplitList(path)
		for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
			if !slices.Contains(dirs, d) {
				path += string(os.PathListSeparator) + d
			}
		}
		os.Setenv("PATH", path)
	})
}
