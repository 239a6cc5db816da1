package cluster

import (
	"fmt"
	"strings"
)

// TemplateOptions are what `cvs init` writes into a new cluster file.
type TemplateOptions struct {
	Hosts        []string // hosts entries, as the hosts list takes them
	User         string
	IdentityFile string
	KnownHosts   string
	Image        string
	Name         string // the container's name ("" for the default)
}

// Template returns a commented cluster file for a first run: persistent
// containers, an install and a test suite to edit.
func Template(o TemplateOptions) string {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	hosts := make([]string, len(o.Hosts))
	for i, h := range o.Hosts {
		hosts[i] = q(h)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# cvs cluster file, written by cvs init. Every key is explained in
# examples/cluster.toml; cvs validate checks this file and prints it in full.

# How cvs logs in to the hosts over SSH.
user = %s
`, q(o.User))
	if o.IdentityFile != "" {
		fmt.Fprintf(&b, "identity_file = %s\n", q(o.IdentityFile))
	} else {
		b.WriteString("# identity_file = \"~/.ssh/id_ed25519\"   # default: ~/.ssh/config, then ssh-agent, then ~/.ssh/id_*\n")
	}
	fmt.Fprintf(&b, `# The host keys cvs init recorded; strict checking refuses any other key.
known_hosts = %s
host_key_check = "strict"

# The hosts (ranges in Slurm's hostlist syntax: node[01-08]); the first one
# is the head, where on = "head" steps run. hosts = "slurm" takes the nodes
# of the Slurm allocation cvs runs in.
hosts = [%s]

[container]
# persistent: "cvs run install" starts a container on every host once and
# installs into it; every "cvs run test" attaches to the same containers.
lifetime = "persistent"
# The image every host runs (pinned to its digest at the start of a run).
image = %s
`, q(o.KnownHosts), strings.Join(hosts, ", "), q(o.Image))
	name := o.Name
	if name == "" {
		name = "cvs-{user-id}"
	}
	fmt.Fprintf(&b, `name = %s
# sshd in the container, for multi-node steps (MPI): peers reach each
# other on this port with a key pair cvs makes for this cluster.
sshd_port = 2224

[suites.install]
description = "Install the validation tools into the containers"
[[suites.install.steps]]
name = "tools"
run = """
echo "installing on $(hostname)"
"""

[suites.test]
description = "Check every host"
[[suites.test.steps]]
name = "hello"
run = "echo hello from $(hostname)"
`, q(name))
	return b.String()
}
