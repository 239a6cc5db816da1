package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cvs-tool/cvs/internal/sshdfarm"
)

// setup is what every tool of one N shares: the farm and the files that
// point each tool at it with the same user, key, port and known_hosts.
type setup struct {
	N    int
	Farm *sshdfarm.Farm
	Dir  string
	CVS  string // path of the cvs binary

	ClusterFile  string // cvs cluster file
	HostsFile    string // one address per line, for pdsh, clush, parallel-ssh
	SSHConfig    string // ssh_config for the OpenSSH-based tools
	SSHConfigKex string // the same, pinned to cvs's key exchange
	// DockerSocket, when set, is the docker_socket of the cluster file.
	DockerSocket string
}

// tool is one row of the benchmark: a command line run against a setup.
type tool struct {
	// Name is the row label; "N" in it stands for the host count.
	Name string
	// Bin is the executable looked up in $PATH (or the cvs binary).
	Bin string
	// Ref marks a reference row that the targets do not compare against.
	Ref bool
	// Cmd returns argv (without the binary) and extra environment.
	Cmd func(s *setup) (args, env []string)
}

const (
	nameCVSExec   = "cvs exec -- true"
	nameCVSStatus = "cvs status"
	nameCVSDocker = "cvs exec -- docker version (reference)"
	// nameCVSStatusCLI is cvs status with the docker CLI, beside the API.
	nameCVSStatusCLI = "cvs status, docker CLI (reference)"
)

// tools returns the rows in their base order; each repetition rotates it.
func tools(withRef, withAPI bool) []tool {
	pdshEnv := func(cfg string) []string {
		// pdsh's ssh module runs "ssh $PDSH_SSH_ARGS CMD"; %u and %h are
		// the user and host. -x -a match pdsh's own default arguments.
		return []string{"PDSH_SSH_ARGS=-F " + cfg + " -x -a -l%u %h"}
	}
	ts := []tool{
		{Name: nameCVSExec, Bin: "cvs", Cmd: func(s *setup) ([]string, []string) {
			return []string{"--cluster", s.ClusterFile, "exec", "--", "true"}, nil
		}},
		{Name: nameCVSStatus, Bin: "cvs", Cmd: func(s *setup) ([]string, []string) {
			return []string{"--cluster", s.ClusterFile, "status"}, nil
		}},
		{Name: "pdsh (default fanout 32)", Bin: "pdsh", Cmd: func(s *setup) ([]string, []string) {
			return []string{"-R", "ssh", "-l", s.Farm.User, "-w", "^" + s.HostsFile, "true"}, pdshEnv(s.SSHConfig)
		}},
		{Name: "pdsh -f N", Bin: "pdsh", Cmd: func(s *setup) ([]string, []string) {
			return []string{"-R", "ssh", "-f", strconv.Itoa(s.N), "-l", s.Farm.User, "-w", "^" + s.HostsFile, "true"}, pdshEnv(s.SSHConfig)
		}},
		{Name: "clush -f N", Bin: "clush", Cmd: func(s *setup) ([]string, []string) {
			return []string{"--hostfile", s.HostsFile, "-f", strconv.Itoa(s.N), "-l", s.Farm.User, "-o", "-F " + s.SSHConfig, "true"}, nil
		}},
		{Name: "parallel-ssh -p N", Bin: "parallel-ssh", Cmd: func(s *setup) ([]string, []string) {
			return []string{"-p", strconv.Itoa(s.N), "-h", s.HostsFile, "-l", s.Farm.User, "-t", "0", "-x", "-F " + s.SSHConfig, "true"}, nil
		}},
	}
	if withAPI {
		ts = append(ts, tool{Name: nameCVSStatusCLI, Bin: "cvs", Ref: true, Cmd: func(s *setup) ([]string, []string) {
			return []string{"--cluster", s.ClusterFile, "status"}, []string{"CVS_DOCKER_ACCESS=cli"}
		}})
	}
	if withRef {
		// cvs status runs the docker CLI on every host; on one machine
		// those runs share the clients' CPUs. This row isolates that cost.
		ts = append(ts, tool{Name: nameCVSDocker, Bin: "cvs", Ref: true,
			Cmd: func(s *setup) ([]string, []string) {
				return []string{"--cluster", s.ClusterFile, "exec", "--", "docker", "version", "--format", "{{.Server.Version}}"}, nil
			}})
		ts = append(ts, tool{Name: "pdsh -f N, ssh with curve25519 kex (reference)", Bin: "pdsh", Ref: true,
			Cmd: func(s *setup) ([]string, []string) {
				return []string{"-R", "ssh", "-f", strconv.Itoa(s.N), "-l", s.Farm.User, "-w", "^" + s.HostsFile, "true"}, pdshEnv(s.SSHConfigKex)
			}})
	}
	return ts
}

// label returns the row name with N filled in.
func (t tool) label(n int) string {
	return strings.ReplaceAll(t.Name, " N", " "+strconv.Itoa(n))
}

// socketLine is the cluster file's docker_socket line, "" for none.
func socketLine(sock string) string {
	if sock == "" {
		return ""
	}
	return fmt.Sprintf("docker_socket = %q\n", sock)
}

// writeSetupFiles writes the cluster file, hosts file and ssh configs.
func writeSetupFiles(s *setup) error {
	f := s.Farm
	var hosts, quoted []string
	for _, h := range f.Hosts {
		hosts = append(hosts, h.Addr)
		quoted = append(quoted, strconv.Quote(h.Addr))
	}
	port := f.Hosts[0].Port

	s.HostsFile = filepath.Join(s.Dir, "hosts")
	if err := os.WriteFile(s.HostsFile, []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		return err
	}

	s.ClusterFile = filepath.Join(s.Dir, "cluster.toml")
	cluster := fmt.Sprintf(`# Written by bench/fanout for %d loopback sshd hosts.
user = %q
identity_file = [%q]
port = %d
known_hosts = %q
host_key_check = "strict"
connect_timeout = "10s"
max_parallel = 256
hosts = [%s]
%s
[container]
lifetime = "per_run"
image = "debian:bookworm"
name = "cvs-bench"
`, s.N, f.User, f.ClientKey, port, f.KnownHosts, strings.Join(quoted, ", "), socketLine(s.DockerSocket))
	if err := os.WriteFile(s.ClusterFile, []byte(cluster), 0o644); err != nil {
		return err
	}

	// One ssh_config for every OpenSSH-based tool, read with -F so that
	// neither ~/.ssh/config nor /etc/ssh/ssh_config changes the run.
	sshConfig := fmt.Sprintf(`# Written by bench/fanout: the options cvs's cluster file sets.
Host *
    User %s
    Port %d
    IdentityFile %s
    IdentitiesOnly yes
    IdentityAgent none
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    BatchMode yes
    ConnectTimeout 10
    ControlMaster no
    ControlPath none
    ForwardAgent no
    ForwardX11 no
    LogLevel ERROR
`, f.User, port, f.ClientKey, f.KnownHosts)
	s.SSHConfig = filepath.Join(s.Dir, "ssh_config")
	if err := os.WriteFile(s.SSHConfig, []byte(sshConfig), 0o644); err != nil {
		return err
	}
	// x/crypto/ssh negotiates curve25519-sha256 with OpenSSH 9.x, while
	// ssh defaults to sntrup761x25519, which costs the client several
	// times more CPU; the reference row shows what that choice is worth.
	s.SSHConfigKex = filepath.Join(s.Dir, "ssh_config.curve25519")
	return os.WriteFile(s.SSHConfigKex, []byte(sshConfig+"    KexAlgorithms curve25519-sha256\n"), 0o644)
}
