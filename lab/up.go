package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// phase is one timed step of Up.
type phase struct {
	title string
	run   func() error
}

// requiredTools are the machine's programs the lab runs; scripts/lab-deps.sh
// installs them all.
var requiredTools = []string{
	"dockerd", "docker", "containerd", "docker-registry", "debootstrap",
	"apt-ftparchive", "ssh", "ssh-keygen", "tc", "ip", "unshare", "chroot",
	"setsid", "tar", "cp",
}

// checkMachine reports everything that keeps the lab from running here, at
// once.
func checkMachine() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "the lab needs root (it runs dockerd, debootstrap and tc)")
	}
	var missing []string
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing programs: "+strings.Join(missing, ", ")+" (run scripts/lab-deps.sh)")
	}
	if len(problems) > 0 {
		return errors.New("cannot run the lab on this machine: " + strings.Join(problems, "; "))
	}
	return nil
}

// Up brings up a lab of n hosts and returns when every host's inner dockerd
// answers and cvs can log in to every host over SSH with strict host key
// checking. It writes the cluster file (ClusterFile) and known_hosts, and logs
// each phase with its duration.
//
// Up starts from whatever it finds: a lab that is already up is recreated
// with n fresh hosts (empty image stores, new host keys), and what a crashed
// Up or Down left (a dead daemon's pid files, a live daemon, old containers,
// the network) is reused or cleaned. Images come from the cache unless their
// recipe changed. On error the lab may be half up; Down cleans it.
func (l *Lab) Up(ctx context.Context, n int) error {
	return l.UpWith(ctx, n, UpOptions{})
}

// UpWith is Up with options: UpWith(ctx, n, UpOptions{Slurm: true}) brings up
// a Slurm lab (see UpOptions).
func (l *Lab) UpWith(ctx context.Context, n int, opt UpOptions) error {
	if n < 1 || n > MaxHosts {
		return fmt.Errorf("lab size %d: want 1 to %d hosts", n, MaxHosts)
	}
	if err := checkMachine(); err != nil {
		return err
	}
	if opt.Slurm {
		if err := checkSlurmMachine(); err != nil {
			return err
		}
	}
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()

	start := time.Now()
	hosts := make([]Host, n)
	for i := range hosts {
		hosts[i] = l.hostAt(i + 1)
	}
	ctl := l.slurmControllerHost()
	withSlurm := ""
	if opt.Slurm {
		withSlurm = " with Slurm"
	}
	l.logf("up: %d hosts%s in %s (subnet %s)", n, withSlurm, l.cfg.Dir, l.cfg.Subnet)
	var set imageSet
	keys := map[string][]string{}
	var keysMu sync.Mutex

	phases := []phase{
		{"prepare: lab key, old files", func() error {
			// A failed Up must not leave a cluster file that looks usable.
			for _, f := range []string{l.paths.clusterFile, l.paths.knownHosts, l.paths.state} {
				os.Remove(f)
			}
			l.st = state{}
			// A Slurm lab before this one: its munged here goes, and
			// so do its key and configuration.
			if err := l.stopMachineMunge(ctx); err != nil {
				return err
			}
			if err := removeTree(l.paths.slurm); err != nil {
				return err
			}
			if opt.Slurm {
				if err := l.writeMungeKey(); err != nil {
					return err
				}
			}
			return l.ensureKeys(ctx)
		}},
		{"daemon: lab dockerd", func() error { return l.ensureDaemon(ctx) }},
		{"hosts: remove old containers", func() error { return l.removeContainers(ctx) }},
		{"network: lab bridge", func() error { return l.ensureNetwork(ctx) }},
		{"network: forwarding on the bridge", func() error { return l.allowForwarding(ctx) }},
		{"registry: start", func() error { return l.StartRegistry(ctx) }},
		{"images: ensure cached", func() (err error) { set, err = l.ensureImages(ctx, opt.Slurm); return err }},
		{"registry: push workload images", func() error { return l.pushWorkloads(ctx, set) }},
		{fmt.Sprintf("hosts: start %d containers", n), func() error {
			return eachHost(ctx, hosts, func(ctx context.Context, h Host) error { return l.runHost(ctx, h, hosts, set, opt) })
		}},
		{"hosts: wait for dockerd and sshd", func() error {
			return eachHost(ctx, hosts, func(ctx context.Context, h Host) error {
				k, err := l.waitHost(ctx, h, 2*time.Minute)
				keysMu.Lock()
				keys[h.Name] = k
				keysMu.Unlock()
				return err
			})
		}},
		{"files: known_hosts, cluster file", func() error {
			l.st = state{
				Subnet:    l.cfg.Subnet.String(),
				Hosts:     hosts,
				Workload:  l.WorkloadImage(),
				Workload2: l.WorkloadImage2(),
				Started:   time.Now().UTC().Format(time.RFC3339),
			}
			if opt.Slurm {
				l.st.Slurm = &slurmState{Controller: ctl, Partition: SlurmPartition}
			}
			if err := writeFileAtomic(l.paths.knownHosts, []byte(knownHosts(hosts, keys)), 0o644); err != nil {
				return err
			}
			params := clusterParams{
				Identity: l.paths.identity, KnownHosts: l.paths.knownHosts,
				Hosts: hosts, Image: l.WorkloadImage(),
			}
			if err := writeFileAtomic(l.paths.clusterFile, []byte(renderClusterFile(params)), 0o644); err != nil {
				return err
			}
			if opt.Slurm {
				params.Slurm = true
				cf := renderClusterFile(params)
				if err := os.MkdirAll(filepath.Dir(l.paths.slurmCluster), 0o755); err != nil {
					return err
				}
				if err := writeFileAtomic(l.paths.slurmCluster, []byte(cf), 0o644); err != nil {
					return err
				}
			}
			return l.save()
		}},
		{"verify: ssh to every host (strict)", func() error {
			return eachHost(ctx, hosts, func(ctx context.Context, h Host) error {
				res, err := l.SSH(ctx, h.Name, "hostname")
				if err != nil {
					return err
				}
				if got := strings.TrimSpace(res.Stdout); got != h.Name {
					return fmt.Errorf("%s: ssh to %s reached %q", h.Name, h.Addr, got)
				}
				return nil
			})
		}},
	}
	if opt.Slurm {
		// The controller container starts with the hosts; the daemons
		// start once every host is ready and the state is saved (the
		// last check, sinfo from this machine, reads it).
		for i, p := range phases {
			if strings.HasPrefix(p.title, "hosts: start") {
				phases = slices.Insert(phases, i+1, phase{"slurm: start controller container", func() error {
					return l.runSlurmController(ctx, ctl, hosts, set)
				}})
				break
			}
		}
		phases = append(phases, phase{"slurm: munged, slurmctld, slurmd", func() error { return l.startSlurm(ctx, ctl, hosts) }})
	}
	for _, p := range phases {
		if err := l.timed(p.title, p.run); err != nil {
			return fmt.Errorf("lab up: %s: %w\n(the lab may be half up: `cvs-lab down` cleans it, `cvs-lab up` retries)", p.title, err)
		}
	}
	l.logf("up: %d hosts ready in %s", n, time.Since(start).Round(100*time.Millisecond))
	l.logf("cluster file: %s", l.paths.clusterFile)
	if opt.Slurm {
		l.logf("slurm: export SLURM_CONF=%s (srun, salloc, sbcast, sinfo from this machine)", l.SlurmConfFile())
		l.logf("slurm: cluster file through srun: %s (salloc -N %d cvs --cluster ...)", l.paths.slurmCluster, n)
	}
	return nil
}
