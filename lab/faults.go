package lab

import (
	"context"
	"fmt"
	"strings"

	cvsdocker "github.com/cvs-tool/cvs/docker"
)

// Fault injection. Each fault changes one real thing on one host (or the
// registry) the way it happens on a real cluster, and has an inverse, so a
// test can put the lab back in t.Cleanup. They act through the lab's daemon
// (docker exec), not SSH, so they work whatever state sshd is in.

// svc runs cvs-lab-svc (from the host image) on host.
func (l *Lab) svc(ctx context.Context, host, service, action string) error {
	_, err := l.HostExec(ctx, host, "cvs-lab-svc", service, action)
	if err != nil {
		return fmt.Errorf("%s %s: %w", service, action, err)
	}
	return nil
}

// StopSSHD stops host's sshd listener: new SSH connections to the host are
// refused (sessions already open go on, as with systemctl stop ssh). It
// returns when the listener is gone.
func (l *Lab) StopSSHD(ctx context.Context, host string) error {
	return l.svc(ctx, host, "sshd", "stop")
}

// StartSSHD starts host's sshd again (a no-op if it runs).
func (l *Lab) StartSSHD(ctx context.Context, host string) error {
	return l.svc(ctx, host, "sshd", "start")
}

// StopDockerd stops host's inner dockerd (its containers stop with it, as
// the daemon does not live-restore). SSH to the host still works; docker
// commands on it fail with "Cannot connect to the Docker daemon".
func (l *Lab) StopDockerd(ctx context.Context, host string) error {
	return l.svc(ctx, host, "dockerd", "stop")
}

// StartDockerd starts host's inner dockerd again and returns when it answers.
func (l *Lab) StartDockerd(ctx context.Context, host string) error {
	return l.svc(ctx, host, "dockerd", "start")
}

// RotateHostKey gives host new SSH host keys and makes its sshd use them,
// leaving the lab's known_hosts file as it was: a client with strict host
// key checking must now refuse the host. It returns the new public keys
// ("type base64"). RefreshKnownHosts undoes the mismatch.
func (l *Lab) RotateHostKey(ctx context.Context, host string) ([]string, error) {
	if err := l.svc(ctx, host, "sshd", "rotate-keys"); err != nil {
		return nil, err
	}
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	return l.hostKeys(ctx, h)
}

// Retag makes ref on host's inner daemon name the image otherRef names
// (pulled from the lab registry if the host lacks it), as if someone had
// pushed another image under the same tag and only this host pulled it: the
// other hosts still get the registry's ref. ImageID tells the two apart. A
// `docker pull ref` on the host undoes it.
func (l *Lab) Retag(ctx context.Context, host, ref, otherRef string) error {
	d := cvsdocker.CLI{}
	if _, err := l.HostExec(ctx, host, d.InspectImage(otherRef, "{{.Id}}")...); err != nil {
		if _, err := l.HostExec(ctx, host, d.Pull(otherRef, "")...); err != nil {
			return fmt.Errorf("retag: pull %s: %w", otherRef, err)
		}
	}
	if _, err := l.HostExec(ctx, host, d.Tag(otherRef, ref)...); err != nil {
		return fmt.Errorf("retag %s as %s: %w", otherRef, ref, err)
	}
	return nil
}

// ImageID returns the ID of ref in host's inner image store ("" and an
// error if the host does not have it).
func (l *Lab) ImageID(ctx context.Context, host, ref string) (string, error) {
	res, err := l.HostExec(ctx, host, cvsdocker.CLI{}.InspectImage(ref, "{{.Id}}")...)
	return strings.TrimSpace(res.Stdout), err
}

// PauseHost freezes every process of host (docker pause): its kernel still
// completes TCP handshakes, but sshd never answers, so clients hang until
// their own timeouts, as with a host that is overloaded or half dead. It
// is the fault for connect and command timeouts; UnpauseHost undoes it.
func (l *Lab) PauseHost(ctx context.Context, host string) error {
	h, err := l.Host(host)
	if err != nil {
		return err
	}
	if _, err := l.dk.out(ctx, "pause", h.Container); err != nil {
		return fmt.Errorf("%s: pause: %w", h.Name, err)
	}
	return nil
}

// UnpauseHost thaws a host PauseHost froze (a no-op if it is not paused).
func (l *Lab) UnpauseHost(ctx context.Context, host string) error {
	h, err := l.Host(host)
	if err != nil {
		return err
	}
	state, err := l.dk.out(ctx, "inspect", "--format", "{{.State.Paused}}", h.Container)
	if err != nil || state != "true" {
		return err
	}
	if _, err := l.dk.out(ctx, "unpause", h.Container); err != nil {
		return fmt.Errorf("%s: unpause: %w", h.Name, err)
	}
	return nil
}

// sshDrop is the rule pair CutSSHLink inserts into a host's own network
// namespace: the host's SSH traffic, both ways, is dropped without a reply.
var sshDrop = [][]string{
	{"INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"},
	{"OUTPUT", "-p", "tcp", "--sport", "22", "-j", "DROP"},
}

// CutSSHLink silently drops host's SSH traffic both ways (iptables in the
// host's network namespace): connections open to it hang, nothing is
// refused or reset, sshd and its sessions go on, as when a switch or a
// cable between the controller and the host fails. RestoreSSHLink undoes
// it. Other traffic (Docker, Slurm, the lab's docker exec) is untouched.
func (l *Lab) CutSSHLink(ctx context.Context, host string) error {
	for _, r := range sshDrop {
		if _, err := l.HostExec(ctx, host, append([]string{"iptables", "-w", "-I"}, r...)...); err != nil {
			return fmt.Errorf("%s: drop SSH traffic: %w", host, err)
		}
	}
	return nil
}

// RestoreSSHLink removes the rules CutSSHLink inserted (each as often as it
// is there; a no-op on a host whose link is whole).
func (l *Lab) RestoreSSHLink(ctx context.Context, host string) error {
	for _, r := range sshDrop {
		for {
			if _, err := l.HostExec(ctx, host, append([]string{"iptables", "-w", "-C"}, r...)...); err != nil {
				break // not there (or no iptables: nothing was cut)
			}
			if _, err := l.HostExec(ctx, host, append([]string{"iptables", "-w", "-D"}, r...)...); err != nil {
				return fmt.Errorf("%s: restore SSH traffic: %w", host, err)
			}
		}
	}
	return nil
}

// FillDockerRoot gives host's inner dockerd a new, empty Docker root on a
// tmpfs of sizeMiB (its images and containers stay on the real root,
// hidden), as on a node whose /var/lib/docker is nearly full: a pull or
// load bigger than that fails with "no space left on device".
// EmptyDockerRoot undoes it.
func (l *Lab) FillDockerRoot(ctx context.Context, host string, sizeMiB int) error {
	if err := l.StopDockerd(ctx, host); err != nil {
		return err
	}
	if _, err := l.HostExec(ctx, host, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "cvs-lab-full", "/var/lib/docker"); err != nil {
		l.StartDockerd(ctx, host)
		return fmt.Errorf("%s: mount a %d MiB Docker root: %w", host, sizeMiB, err)
	}
	return l.StartDockerd(ctx, host)
}

// EmptyDockerRoot puts host's real Docker root back after FillDockerRoot
// (a no-op when none is mounted).
func (l *Lab) EmptyDockerRoot(ctx context.Context, host string) error {
	res, err := l.HostExec(ctx, host, "sh", "-c", "grep -c ' /var/lib/docker tmpfs ' /proc/mounts || true")
	if err != nil || strings.TrimSpace(res.Stdout) == "0" {
		return err
	}
	if err := l.StopDockerd(ctx, host); err != nil {
		return err
	}
	if _, err := l.HostExec(ctx, host, "umount", "/var/lib/docker"); err != nil {
		return fmt.Errorf("%s: unmount the small Docker root: %w", host, err)
	}
	return l.StartDockerd(ctx, host)
}
