package lab

import (
	"context"
	"errors"
	"fmt"
	"github.com/cvs-tool/cvs/fanout"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	networkName     = "cvs-lab"
	containerPrefix = "cvs-lab-"
	// labelRole marks every container the lab creates on its daemon, so
	// Up and Down find leftovers by label rather than by name.
	labelRole = "io.cvs-lab.role"
)

// ensureNetwork creates the lab bridge, or keeps the existing one if it has
// the configured subnet. The network is internal: hosts reach each other
// and the machine's gateway address (the registry), and nothing else.
func (l *Lab) ensureNetwork(ctx context.Context) error {
	subnet, err := l.dk.out(ctx, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", networkName)
	if err == nil {
		if subnet == l.cfg.Subnet.String() {
			return nil
		}
		if _, err := l.dk.out(ctx, "network", "rm", networkName); err != nil {
			return fmt.Errorf("remove lab network with old subnet %s: %w", subnet, err)
		}
	}
	_, err = l.dk.out(ctx, "network", "create",
		"--driver", "bridge",
		"--internal",
		"--subnet", l.cfg.Subnet.String(),
		"--gateway", l.Gateway().String(),
		"--opt", "com.docker.network.bridge.name="+l.bridgeName(),
		"--label", labelRole+"=network",
		networkName)
	if err != nil {
		return fmt.Errorf("create lab network %s on bridge %s (if the subnet overlaps another network, set %s): %w",
			l.cfg.Subnet, l.bridgeName(), EnvSubnet, err)
	}
	return nil
}

// forwardRule lets the lab's hosts talk to each other whatever the
// machine's FORWARD chain does. A stock Docker daemon (one that manages
// iptables) sets the FORWARD policy to DROP, and with br_netfilter loaded
// (Docker loads it) traffic between two ports of a bridge goes through
// FORWARD: without this rule the hosts of a newcomer's lab cannot reach each
// other, nor slurmd its slurmctld. The rule names this lab's bridge alone;
// Down deletes it.
func (l *Lab) forwardRule() []string {
	return []string{"FORWARD", "-i", l.bridgeName(), "-o", l.bridgeName(), "-j", "ACCEPT", "-m", "comment", "--comment", "cvs-lab " + l.cfg.Dir}
}

// allowForwarding inserts forwardRule at the top of FORWARD, once.
func (l *Lab) allowForwarding(ctx context.Context) error {
	rule := l.forwardRule()
	if _, err := run(ctx, append([]string{"iptables", "-w", "-C"}, rule...)...); err == nil {
		return nil
	}
	if _, err := run(ctx, append([]string{"iptables", "-w", "-I"}, rule...)...); err != nil {
		return fmt.Errorf("let the lab's hosts reach each other (iptables -I %s): %w", strings.Join(rule, " "), err)
	}
	return nil
}

// disallowForwarding deletes forwardRule, as many times as it is there.
func (l *Lab) disallowForwarding(ctx context.Context) error {
	rule := l.forwardRule()
	for i := 0; i < 10; i++ {
		if _, err := run(ctx, append([]string{"iptables", "-w", "-C"}, rule...)...); err != nil {
			return nil
		}
		if _, err := run(ctx, append([]string{"iptables", "-w", "-D"}, rule...)...); err != nil {
			return err
		}
	}
	return nil
}

// labContainers lists the IDs of every container the lab created.
func (l *Lab) labContainers(ctx context.Context) ([]string, error) {
	out, err := l.dk.out(ctx, "ps", "-aq", "--filter", "label="+labelRole)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (l *Lab) removeContainers(ctx context.Context) error {
	ids, err := l.labContainers(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	_, err = l.dk.out(ctx, append([]string{"rm", "--force", "--volumes"}, ids...)...)
	return err
}

// ensureKeys creates the lab's SSH key pair once; it is reused by every Up
// until Down.
func (l *Lab) ensureKeys(ctx context.Context) error {
	if err := os.MkdirAll(l.paths.keysDir, 0o700); err != nil {
		return err
	}
	if !fileExists(l.paths.identity) || !fileExists(l.paths.identity+".pub") {
		os.Remove(l.paths.identity)
		os.Remove(l.paths.identity + ".pub")
		if _, err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cvs-lab", "-f", l.paths.identity); err != nil {
			return fmt.Errorf("generate the lab key: %w", err)
		}
	}
	pub, err := os.ReadFile(l.paths.identity + ".pub")
	if err != nil {
		return err
	}
	// Mounted read-only as root's authorized_keys on every host; sshd's
	// StrictModes wants it owned by root and not writable by others.
	return writeFileAtomic(l.paths.authorized, pub, 0o644)
}

// runHost creates and starts host's container.
func (l *Lab) runHost(ctx context.Context, h Host, all []Host, set imageSet, opt UpOptions) error {
	dataDir := filepath.Join(l.paths.hosts, h.Name, "docker")
	if err := removeTree(filepath.Join(l.paths.hosts, h.Name)); err != nil {
		return fmt.Errorf("%s: clear its old image store: %w", h.Name, err)
	}
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return err
	}
	if err := os.MkdirAll(l.paths.shared, 0o755); err != nil {
		return err
	}
	args := []string{
		"run", "--detach",
		"--name", h.Container,
		"--hostname", h.Name,
		"--label", labelRole + "=host",
		"--label", "io.cvs-lab.host=" + h.Name,
		"--network", networkName,
		"--ip", h.Addr.String(),
		// tini as PID 1 reaps what the host's daemons orphan.
		"--init",
		// Docker-in-Docker without --privileged, which fails on this
		// machine kind (CAP_SYS_RESOURCE is not in the bounding set).
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined",
		"--device-cgroup-rule", "a *:* rwm",
		"--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		// /proc/sys is read-only here; set forwarding for the host's own
		// network namespace up front so its dockerd need not.
		"--sysctl", "net.ipv4.ip_forward=1",
		"--tmpfs", "/run",
		"--tmpfs", "/tmp",
		// The inner image store on the machine's filesystem: overlay2
		// cannot stack on the host container's own overlay.
		"--volume", dataDir + ":/var/lib/docker",
		"--volume", set.aptDir + ":" + AptRepoPath + ":ro",
		"--volume", l.paths.shared + ":" + SharedPath,
		"--volume", l.paths.authorized + ":/root/.ssh/authorized_keys:ro",
		// Docker's embedded DNS forwards names it does not know to this
		// server, from the daemon's side: the machine's loopback, where
		// nothing answers, so no lookup leaves the machine.
		"--dns", "127.0.0.1",
		// The gateway address as a CIDR, which dockerd trusts over HTTP on
		// every port: the lab registry and the one that wants a login
		// (AuthRegistry).
		"--env", "CVS_LAB_REGISTRY=" + l.Gateway().String() + "/32",
		"--env", "CVS_LAB_CGROUP=" + l.cgroupParent() + "-" + h.Name,
	}
	for _, o := range all {
		if o.Name != h.Name {
			args = append(args, "--add-host", o.Name+":"+o.Addr.String())
		}
	}
	image := set.host
	if opt.Slurm {
		args = append(args, l.slurmContainerArgs(l.slurmControllerHost(), all)...)
		image = set.hostSlurm
	}
	args = append(args, image)
	if _, err := l.dk.out(ctx, args...); err != nil {
		return fmt.Errorf("%s: start its container: %w", h.Name, err)
	}
	return nil
}

// waitHost waits until host's inner dockerd answers and its sshd accepts TCP
// connections on the lab bridge, then returns its public host keys.
func (l *Lab) waitHost(parent context.Context, h Host, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var last error
	for {
		last = l.hostReady(ctx, h)
		if last == nil {
			break
		}
		state, _ := l.dk.out(ctx, "inspect", "--format", "{{.State.Status}}", h.Container)
		if state != "" && state != "running" {
			logs, _ := command{argv: l.dk.argv("logs", "--tail", "20", h.Container)}.run(ctx)
			return nil, fmt.Errorf("%s: container is %s: %s", h.Name, state, tail(logs, 1000))
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil, fmt.Errorf("%s: %w", h.Name, parent.Err())
			}
			return nil, fmt.Errorf("%s: not ready after %s: %v (look at %s)", h.Name, timeout, last,
				"cvs-lab exec "+h.Name+" -- tail /var/log/dockerd.log /var/log/sshd.log")
		case <-time.After(250 * time.Millisecond):
		}
	}
	return l.hostKeys(ctx, h)
}

func (l *Lab) hostReady(ctx context.Context, h Host) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.dk.exec(pctx, h, nil, "sh", "-c", "cvs-lab-svc dockerd status && docker info >/dev/null && cvs-lab-svc sshd status"); err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(pctx, "tcp", net.JoinHostPort(h.Addr.String(), "22"))
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// hostKeys reads host's public host keys from its filesystem (the ground
// truth), as "type base64" pairs.
func (l *Lab) hostKeys(ctx context.Context, h Host) ([]string, error) {
	res, err := l.dk.exec(ctx, h, nil, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
	if err != nil {
		return nil, fmt.Errorf("%s: read host keys: %w", h.Name, err)
	}
	var keys []string
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			keys = append(keys, f[0]+" "+f[1])
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: has no host keys in /etc/ssh", h.Name)
	}
	sort.Strings(keys)
	return keys, nil
}

// knownHosts renders a known_hosts file: one line per host key, the host by
// its bare address (port 22 needs no [addr]:port form).
func knownHosts(hosts []Host, keys map[string][]string) string {
	var b strings.Builder
	b.WriteString("# cvs lab host keys, read from the hosts by cvs-lab up\n")
	for _, h := range hosts {
		for _, k := range keys[h.Name] {
			b.WriteString(h.Addr.String() + " " + k + "\n")
		}
	}
	return b.String()
}

// RefreshKnownHosts rewrites the known_hosts file from the hosts' current
// host keys, e.g. to undo RotateHostKey for the tests that follow.
func (l *Lab) RefreshKnownHosts(ctx context.Context) error {
	keys, err := l.allHostKeys(ctx, l.st.Hosts)
	if err != nil {
		return err
	}
	return writeFileAtomic(l.paths.knownHosts, []byte(knownHosts(l.st.Hosts, keys)), 0o644)
}

func (l *Lab) allHostKeys(ctx context.Context, hosts []Host) (map[string][]string, error) {
	keys := map[string][]string{}
	var mu sync.Mutex
	err := eachHost(ctx, hosts, func(ctx context.Context, h Host) error {
		k, err := l.hostKeys(ctx, h)
		mu.Lock()
		keys[h.Name] = k
		mu.Unlock()
		return err
	})
	return keys, err
}

// eachHostLimit bounds how many hosts are worked on at once: starting many
// inner dockerds together on a 2-core machine only makes each one slower.
const eachHostLimit = 8

// eachHost runs fn for every host, eachHostLimit at a time, and joins the
// errors; a failure on one host does not stop the others. Each error names
// its host already.
func eachHost(ctx context.Context, hosts []Host, fn func(context.Context, Host) error) error {
	errs := fanout.Run(ctx, len(hosts), eachHostLimit, func(ctx context.Context, i int) error {
		if err := fn(ctx, hosts[i]); err != nil {
			return err
		}
		return nil
	})
	for i, err := range errs {
		if err != nil && errors.Is(err, ctx.Err()) && !strings.HasPrefix(err.Error(), hosts[i].Name+":") {
			errs[i] = fmt.Errorf("%s: %w", hosts[i].Name, err)
		}
	}
	return errors.Join(errs...)
}
