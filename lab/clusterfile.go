package lab

import (
	"fmt"
	"strconv"
	"strings"
)

// clusterParams are the lab facts a cluster file is rendered from.
type clusterParams struct {
	Identity   string
	KnownHosts string
	Hosts      []Host
	Image      string
	// Slurm: the hosts by their Slurm node names, and [engine] kind =
	// "slurm" (cvs reaches them through srun, inside an allocation).
	Slurm bool
}

// renderClusterFile returns the cvs cluster file for the lab. It uses only
// keys that cvs's strict parser knows; the suites are a minimal install/test
// pair the demo and the e2e tests run.
func renderClusterFile(p clusterParams) string {
	addrs := make([]string, len(p.Hosts))
	for i, h := range p.Hosts {
		addrs[i] = h.Addr.String()
		if p.Slurm {
			addrs[i] = h.Name
		}
	}
	head := ""
	if len(addrs) > 0 {
		head = addrs[0]
	}
	for i := range addrs {
		addrs[i] = tomlString(addrs[i])
	}
	engine := ""
	if p.Slurm {
		engine = "\n# Every command is an srun step of the allocation cvs runs in (salloc -N ...).\n[engine]\nkind = \"slurm\"\n"
	}
	return fmt.Sprintf(clusterTemplate,
		tomlString(p.Identity), tomlString(p.KnownHosts), strings.Join(addrs, ", "), tomlString(head), engine,
		tomlString(p.Image), tomlString(AptRepoPath+":/cvs-apt:ro"))
}

const clusterTemplate = `# cvs cluster file for the cvs test lab, written by cvs-lab up.
# Every host is a container with its own IP, sshd and dockerd; see lab/.
user = "root"
identity_file = [%s]
port = 22
known_hosts = %s
host_key_check = "strict"
connect_timeout = "10s"
max_parallel = 64
hosts = [%s]
head = %s
%s
[container]
lifetime = "persistent"
image = %s
name = "cvs-lab"
pull_timeout = "900s"
sshd_port = 2224
network = "host"
volumes = [%s]

[suites.install]
description = "Install into the persistent containers (run once)"
[[suites.install.steps]]
name = "install"
run = """
mkdir -p /opt/cvs
echo "installed on $(hostname) at $(date -u +%%FT%%TZ)" > /opt/cvs/installed
cat /opt/cvs/installed
"""
on = "all"
timeout = "5m"

[suites.test]
description = "Use what install left, and reach every container over SSH (run again and again)"
[[suites.test.steps]]
name = "installed"
run = "cat /opt/cvs/installed"
on = "all"
timeout = "5m"
[[suites.test.steps]]
name = "peers"
run = """
failed=0
for peer in $CVS_HOSTS; do
  if name=$(ssh -o ConnectTimeout=5 "$peer" hostname); then
    echo "$peer:$CVS_SSHD_PORT -> $name"
  else
    echo "$peer:$CVS_SSHD_PORT: unreachable" >&2
    failed=1
  fi
done
exit $failed
"""
on = "head"
timeout = "5m"
`

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u` + leftPad(strconv.FormatInt(int64(r), 16), 4))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}
