package lab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/internal/golden"
)

func testSlurmParams() slurmParams {
	l, _ := New(Config{Subnet: netip.MustParsePrefix("172.30.0.0/24")})
	return slurmParams{
		Controller: l.slurmControllerHost(),
		Hosts:      []Host{l.hostAt(1), l.hostAt(2), l.hostAt(3)},
		Topology:   "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1",
	}
}

func TestSlurmConfGolden(t *testing.T) {
	golden.Check(t, "slurm.conf.golden", []byte(renderSlurmConf(testSlurmParams())))
}

// The client's copy is the hosts' slurm.conf plus the munge socket, and
// nothing else differs.
func TestSlurmClientConf(t *testing.T) {
	p := testSlurmParams()
	nodes := renderSlurmConf(p)
	p.MungeSocket = "/var/tmp/cvs-slurm-lab/run/munge/munge.socket.2"
	client := renderSlurmConf(p)
	if !strings.Contains(client, "\nAuthInfo=socket="+p.MungeSocket+"\n") {
		t.Errorf("client slurm.conf lacks the munge socket:\n%s", client)
	}
	if strings.Contains(nodes, "AuthInfo") {
		t.Error("the hosts' slurm.conf must use munged's default socket")
	}
	settings := func(s string) []string {
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "AuthInfo=") {
				out = append(out, line)
			}
		}
		return out
	}
	if !slices.Equal(settings(nodes), settings(client)) {
		t.Errorf("client and hosts' slurm.conf differ beyond AuthInfo:\n%s\n---\n%s", nodes, client)
	}
}

func TestSlurmConfNeedsNoCgroups(t *testing.T) {
	conf := renderSlurmConf(testSlurmParams())
	for _, want := range []string{
		"SlurmctldHost=slurmctl(172.30.0.10)\n",
		"ProctrackType=proctrack/linuxproc\n",
		"TaskPlugin=task/none\n",
		"JobAcctGatherType=jobacct_gather/none\n",
		"SlurmdUser=root\n",
		"NodeName=host2 NodeAddr=172.30.0.12 ",
		"PartitionName=lab Nodes=host1,host2,host3 Default=YES",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("slurm.conf lacks %q", want)
		}
	}
	if strings.Contains(conf, "/cgroup") {
		t.Error("slurm.conf must not use a cgroup plugin")
	}
}

// The controller takes the address below the first host's.
func TestSlurmControllerAddress(t *testing.T) {
	l := newTestLab(t, Config{})
	ctl := l.slurmControllerHost()
	if ctl.Addr.String() != "172.29.0.10" || ctl.Name != SlurmControllerName || ctl.Container != "cvs-lab-slurmctl" {
		t.Errorf("controller = %+v", ctl)
	}
	if ctl.Addr == l.hostAt(1).Addr || ctl.Addr == l.Gateway() {
		t.Error("controller address collides with a host or the gateway")
	}
}

// A lab without Slurm keeps its host image and its environment: the Slurm
// recipes feed only the host-slurm key.
func TestSlurmLeavesPlainLabAlone(t *testing.T) {
	base := newTestLab(t, Config{}).cacheKeys()
	saved := slurmPackages
	t.Cleanup(func() { slurmPackages = saved })
	slurmPackages = append(append([]string(nil), saved...), "slurm-wlm-doc")
	changed := newTestLab(t, Config{}).cacheKeys()
	if changed.hostSlurm == base.hostSlurm {
		t.Error("a new Slurm package must change the host-slurm key")
	}
	if changed.host != base.host || changed.workload != base.workload || changed.apt != base.apt {
		t.Error("a Slurm package must not change the plain lab's images")
	}
	savedHost := hostPackages
	t.Cleanup(func() { hostPackages = savedHost })
	hostPackages = append(append([]string(nil), savedHost...), "curl")
	if newTestLab(t, Config{}).cacheKeys().hostSlurm == changed.hostSlurm {
		t.Error("host-slurm is built from the host image: a host change must rebuild it")
	}

	l := newTestLab(t, Config{})
	l.st.Hosts = []Host{l.hostAt(1)}
	for _, kv := range l.Env() {
		if strings.HasPrefix(kv, "SLURM_") || strings.Contains(kv, "MUNGE") {
			t.Errorf("plain lab Env has %s", kv)
		}
	}
	if l.SlurmEnv() != nil || l.Slurm() {
		t.Error("plain lab reports Slurm")
	}
	l.st.Slurm = &slurmState{Controller: l.slurmControllerHost(), Partition: SlurmPartition}
	env := strings.Join(l.Env(), "\n")
	if !strings.Contains(env, "SLURM_CONF="+l.SlurmConfFile()) || !strings.Contains(env, "CVS_LAB_MUNGE_SOCKET="+l.MungeSocket()) {
		t.Errorf("Slurm lab Env lacks SLURM_CONF or the munge socket:\n%s", env)
	}
}

func TestSlurmRecipesEmbedded(t *testing.T) {
	for _, name := range []string{"slurm-build.sh", "cvs-lab-slurm"} {
		if recipe(name) == "" {
			t.Errorf("recipe %s is empty", name)
		}
	}
}

func TestParseSlurmdC(t *testing.T) {
	got, err := parseSlurmdC("NodeName=host1 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105\nUpTime=0-03:32:59\n")
	if err != nil || got != "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1" {
		t.Errorf("parseSlurmdC = %q, %v", got, err)
	}
	if _, err := parseSlurmdC("NodeName=host1 CPUs=2\n"); err == nil {
		t.Error("parseSlurmdC accepted a line without the topology")
	}
}
