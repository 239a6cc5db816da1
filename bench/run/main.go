// Command bench-run measures what one `cvs run test` costs on the lab's
// hosts once the persistent containers are up (attach, one `true` step),
// side by side in one run: cvs through the Docker Engine API over SSH,
// cvs through the docker CLI, `cvs exec --in-container -- true` both ways,
// the hand-written equivalent (pdsh running docker start + docker exec on
// every host), and Ansible (community.docker's docker_container, state
// started, then docker_container_exec) when ansible-playbook and the hosts'
// Python Docker SDK are there. It writes a Markdown table with the
// commands that produced it.
//
//	make bench-run            # 8 hosts, 5 runs
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/lab"
)

func main() {
	hosts := flag.Int("hosts", 8, "lab hosts")
	runs := flag.Int("runs", 5, "measured runs of each method")
	cvs := flag.String("cvs", "bin/cvs", "the cvs binary")
	out := flag.String("out", "bench/RUN-RESULTS.md", "the results file")
	flag.Parse()
	if err := run(*hosts, *runs, *cvs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench-run:", err)
		os.Exit(1)
	}
}

type method struct {
	name  string
	cmd   []string
	env   []string
	times []time.Duration
}

func (m *method) median() time.Duration {
	t := append([]time.Duration(nil), m.times...)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	return t[len(t)/2]
}

func run(n, runs int, cvs, out string) error {
	ctx := context.Background()
	started := time.Now()
	l, err := lab.OpenAtLeast(ctx, lab.Config{}, n, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		return err
	}
	hosts := l.Hosts()[:n]
	dir, err := os.MkdirTemp("", "bench-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var addrs, quoted []string
	for _, h := range hosts {
		addrs = append(addrs, h.Addr.String())
		quoted = append(quoted, fmt.Sprintf("%q", h.Addr.String()))
	}
	const name = "bench-run"
	cluster := filepath.Join(dir, "cluster.toml")
	text := fmt.Sprintf(`user = "root"
identity_file = %q
known_hosts = %q
hosts = [%s]

[container]
lifetime = "persistent"
image = %q
name = %q
network = "host"
volumes = [%q]

[suites.test]
[[suites.test.steps]]
name = "true"
run = "true"
`, l.IdentityFile(), l.KnownHostsFile(), strings.Join(quoted, ", "), l.WorkloadImage(), name, lab.AptRepoPath+":/cvs-apt:ro")
	if err := os.WriteFile(cluster, []byte(text), 0o600); err != nil {
		return err
	}
	env := append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"), "XDG_STATE_HOME="+filepath.Join(dir, "state"))
	api, cli := append(env, "CVS_DOCKER_ACCESS=auto"), append(env, "CVS_DOCKER_ACCESS=cli")
	base := []string{cvs, "--cluster", cluster, "-q"}
	// The persistent containers, set up once (launch, provisioning, sshd).
	if b, err := command(ctx, env, append(base, "up")...).CombinedOutput(); err != nil {
		return fmt.Errorf("cvs up: %v\n%s", err, b)
	}
	defer command(ctx, env, append(base, "down", "--force")...).Run()
	ssh, err := l.SSHArgs(hosts[0].Name)
	if err != nil {
		return err
	}
	methods := []*method{
		{name: "cvs run test (Docker API)", cmd: append(base, "run", "test"), env: api},
		{name: "cvs run test (docker CLI)", cmd: append(base, "run", "test"), env: cli},
		{name: "cvs exec --in-container -- true (Docker API)", cmd: append(base, "exec", "--in-container", "--", "true"), env: api},
		{name: "cvs exec --in-container -- true (docker CLI)", cmd: append(base, "exec", "--in-container", "--", "true"), env: cli},
		{name: "cvs exec -- true (no container)", cmd: append(base, "exec", "--", "true"), env: env},
	}
	if p, err := exec.LookPath("pdsh"); err == nil {
		// pdsh's ssh module with the lab's key and known_hosts: the
		// options ride in PDSH_SSH_ARGS.
		sshOpts := strings.Join(ssh[1:len(ssh)-1], " ")
		methods = append(methods, &method{
			name: fmt.Sprintf("pdsh -R ssh -f %d: docker start + docker exec true (a hand-written script)", n),
			cmd:  []string{p, "-R", "ssh", "-f", fmt.Sprint(n), "-w", strings.Join(addrs, ","), fmt.Sprintf("docker start %s >/dev/null && docker exec %s true", name, name)},
			env:  append(env, "PDSH_SSH_ARGS="+sshOpts+" %h", "PDSH_SSH_ARGS_APPEND="),
		})
	}
	if m, err := ansible(ctx, l, hosts, dir, name); err != nil {
		fmt.Fprintln(os.Stderr, "no Ansible row:", err)
	} else {
		methods = append(methods, m)
	}
	// One warm-up of each, then runs rounds with the order rotated.
	for _, m := range methods {
		if b, err := command(ctx, m.env, m.cmd...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", m.name, err, b)
		}
	}
	for i := 0; i < runs; i++ {
		fmt.Fprintf(os.Stderr, "run %d of %d\n", i+1, runs)
		for j := range methods {
			m := methods[(i+j)%len(methods)]
			start := time.Now()
			if b, err := command(ctx, m.env, m.cmd...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", m.name, err, b)
			}
			m.times = append(m.times, time.Since(start))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Run benchmark: one `cvs run test` on persistent containers\n\nWritten by bench/run (`make bench-run`) on %s UTC in %s, invoked as `%s`. "+
		"%d lab hosts (each its own sshd and Docker 20.10 daemon), the persistent container `%s` up on every host before the clock starts (`cvs up`); "+
		"`cvs run test` attaches and runs one step, `true`. One warm-up of every method, then %d rounds with the order rotated; wall time of the whole command.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), time.Since(started).Round(time.Second), strings.Join(os.Args, " "), n, name, runs)
	b.WriteString("| method | wall s, median (min–max) |\n|---|---|\n")
	for _, m := range methods {
		mn, mx := m.times[0], m.times[0]
		for _, t := range m.times {
			mn, mx = min(mn, t), max(mx, t)
		}
		fmt.Fprintf(&b, "| %s | %.3f (%.3f–%.3f) |\n", m.name, m.median().Seconds(), mn.Seconds(), mx.Seconds())
	}
	runAPI, execAPI := methods[0].median().Seconds(), methods[2].median().Seconds()
	target := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**missed**"
	}
	fmt.Fprintf(&b, "\n## Targets\n\n- `cvs run test` (API) within 2× of `cvs exec --in-container -- true` (API): %.2f× %s\n", runAPI/execAPI, target(runAPI <= 2*execAPI))
	for _, m := range methods {
		if strings.HasPrefix(m.name, "Ansible") {
			fmt.Fprintf(&b, "- `cvs run test` (API) under 0.25× the Ansible run: %.2f× %s\n", runAPI/m.median().Seconds(), target(runAPI < 0.25*m.median().Seconds()))
		}
	}
	fmt.Fprintf(&b, "\ncvs cluster file:\n\n```toml\n%s```\n", text)
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

func command(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = env
	return c
}

// ansible returns the Ansible method when ansible-playbook is installed
// and the hosts have Python with the Docker SDK.
func ansible(ctx context.Context, l *lab.Lab, hosts []lab.Host, dir, name string) (*method, error) {
	p, err := exec.LookPath("ansible-playbook")
	if err != nil {
		return nil, err
	}
	if _, err := l.HostExec(ctx, hosts[0].Name, "python3", "-c", "import docker"); err != nil {
		return nil, fmt.Errorf("the hosts have no python3 with the Docker SDK (python3-docker): %v", err)
	}
	var inv strings.Builder
	inv.WriteString("[lab]\n")
	for _, h := range hosts {
		inv.WriteString(h.Addr.String() + "\n")
	}
	fmt.Fprintf(&inv, "[lab:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'\nansible_python_interpreter=/usr/bin/python3\n",
		l.IdentityFile(), l.KnownHostsFile())
	invFile := filepath.Join(dir, "inventory.ini")
	play := filepath.Join(dir, "test.yml")
	os.WriteFile(invFile, []byte(inv.String()), 0o600)
	os.WriteFile(play, []byte(fmt.Sprintf(`- hosts: lab
  gather_facts: false
  tasks:
    - community.docker.docker_container:
        name: %s
        image: %s
        state: started
        comparisons: {"*": ignore}
        network_mode: host
        command: ["sh", "-c", "while :; do sleep 3600; done"]
    - community.docker.docker_container_exec:
        container: %s
        command: "true"
`, name, l.WorkloadImage(), name)), 0o600)
	return &method{name: fmt.Sprintf("Ansible (docker_container state=started + docker_container_exec, forks %d)", len(hosts)),
		cmd: []string{p, "-i", invFile, "-f", fmt.Sprint(len(hosts)), play},
		env: append(os.Environ(), "ANSIBLE_HOST_KEY_CHECKING=True")}, nil
}
