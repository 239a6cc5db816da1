package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is a snapshot of a lab, as probed now (not as recorded).
type Status struct {
	Dir string `json:"dir"`
	// Up is true when Up completed and the lab daemon runs.
	Up                bool         `json:"up"`
	Daemon            ProcStatus   `json:"daemon"`
	Registry          ProcStatus   `json:"registry"`
	RegistryAddr      string       `json:"registry_addr"`
	RegistryThrottled bool         `json:"registry_throttled"`
	ClusterFile       string       `json:"cluster_file,omitempty"`
	Hosts             []HostStatus `json:"hosts"`
	// Slurm is set for a Slurm lab.
	Slurm *SlurmStatus `json:"slurm,omitempty"`
}

// ProcStatus is one of the lab's own processes on the machine.
type ProcStatus struct {
	PID     int  `json:"pid"`
	Running bool `json:"running"`
}

// HostStatus is one host as seen from the machine.
type HostStatus struct {
	Host
	// State is the host container's state: running, exited, ..., or
	// missing.
	State string `json:"state"`
	// SSHD is true when port 22 on the host's address accepts TCP.
	SSHD bool `json:"sshd"`
	// Dockerd is true when the host's inner daemon answers; Docker is its
	// version and DockerID its daemon ID (distinct on every host).
	Dockerd  bool   `json:"dockerd"`
	Docker   string `json:"docker,omitempty"`
	DockerID string `json:"docker_id,omitempty"`
}

// Status probes the lab without changing it. A lab that is not up yields
// Up == false and whatever processes still run, not an error.
func (l *Lab) Status(ctx context.Context) (Status, error) {
	st := Status{Dir: l.cfg.Dir, RegistryAddr: l.Registry()}
	st.Daemon.PID, _ = readPID(l.paths.dockerPID)
	st.Daemon.Running = procAlive(st.Daemon.PID, l.paths.dockerSock)
	st.Registry.PID, _ = readPID(l.paths.registryPID)
	st.Registry.Running = procAlive(st.Registry.PID, l.paths.registryConf)
	st.RegistryThrottled = l.registryThrottled(ctx)
	recorded, err := l.readState()
	if err != nil || !st.Daemon.Running {
		return st, nil
	}
	st.Up = true
	st.Slurm = l.slurmStatus(ctx, recorded)
	if fileExists(l.paths.clusterFile) {
		st.ClusterFile = l.paths.clusterFile
	}
	st.Hosts = make([]HostStatus, len(recorded.Hosts))
	for i, h := range recorded.Hosts {
		st.Hosts[i].Host = h
	}
	err = eachHost(ctx, recorded.Hosts, func(ctx context.Context, h Host) error {
		var hs *HostStatus
		for i := range st.Hosts {
			if st.Hosts[i].Name == h.Name {
				hs = &st.Hosts[i]
			}
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		hs.State = "missing"
		if s, err := l.dk.out(ctx, "inspect", "--format", "{{.State.Status}}", h.Container); err == nil {
			hs.State = s
		}
		if hs.State != "running" {
			return nil
		}
		var d net.Dialer
		if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(h.Addr.String(), "22")); err == nil {
			c.Close()
			hs.SSHD = true
		}
		if res, err := l.dk.exec(ctx, h, nil, "docker", "info", "--format", "{{.ServerVersion}} {{.ID}}"); err == nil {
			f := strings.Fields(res.Stdout)
			if len(f) == 2 {
				hs.Dockerd, hs.Docker, hs.DockerID = true, f[0], f[1]
			}
		}
		return nil
	})
	return st, err
}

// Print writes st for a person: the lab's processes, then one line per host.
func (st Status) Print(w io.Writer) {
	onOff := func(ok bool) string {
		if ok {
			return "up"
		}
		return "down"
	}
	fmt.Fprintf(w, "lab:        %s (%s)\n", st.Dir, map[bool]string{true: "up", false: "not up"}[st.Up])
	fmt.Fprintf(w, "dockerd:    %s (pid %d)\n", onOff(st.Daemon.Running), st.Daemon.PID)
	reg := onOff(st.Registry.Running)
	if st.RegistryThrottled {
		reg += ", throttled"
	}
	fmt.Fprintf(w, "registry:   %s at %s (pid %d)\n", reg, st.RegistryAddr, st.Registry.PID)
	if st.ClusterFile != "" {
		fmt.Fprintf(w, "cluster:    %s\n", st.ClusterFile)
	}
	if s := st.Slurm; s != nil {
		fmt.Fprintf(w, "slurmctld:  %s at %s (container %s)\n", s.Controller.Name, s.Controller.Addr, s.ControllerState)
		fmt.Fprintf(w, "munged:     %s (pid %d, this machine)\n", onOff(s.Munged.Running), s.Munged.PID)
		if s.Error != "" {
			fmt.Fprintf(w, "slurm:      %s\n", s.Error)
		} else {
			names := make([]string, 0, len(s.Nodes))
			for n := range s.Nodes {
				names = append(names, n)
			}
			sort.Strings(names)
			for i, n := range names {
				names[i] = n + " " + s.Nodes[n]
			}
			fmt.Fprintf(w, "slurm:      %s\n", strings.Join(names, ", "))
		}
	}
	if len(st.Hosts) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tCONTAINER\tSSHD\tDOCKERD\tDOCKER ID")
	for _, h := range st.Hosts {
		dockerd := onOff(h.Dockerd)
		if h.Dockerd {
			dockerd = h.Docker
		}
		id := h.DockerID
		if len(id) > 14 {
			id = id[:14]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Addr, h.State, onOff(h.SSHD), dockerd, id)
	}
	tw.Flush()
}
