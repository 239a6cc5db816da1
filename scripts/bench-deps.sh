#!/bin/sh
# bench-deps.sh installs what `make bench-fanout` needs: the baseline
# fan-out tools it times cvs against, and OpenSSH's sshd, which the
# benchmark's loopback hosts run (internal/sshdfarm). It is idempotent:
# when every package is present, apt is not touched at all.
#
# It never starts the machine's own sshd: the benchmark runs its own sshd
# processes with their own configs, and a system sshd started by the
# package's postinst would be one more thing the benchmark did not ask for.
set -eu

# pdsh            pdsh -R ssh
# clustershell    clush
# pssh            parallel-ssh
# openssh-server  sshd for the loopback hosts
# openssh-client  ssh, used by all three baselines
# ansible         the Ansible baseline of make bench-run (community.docker)
PKGS="pdsh clustershell pssh openssh-server openssh-client ansible"

exec "$(dirname "$0")/apt-install.sh" bench-deps $PKGS
