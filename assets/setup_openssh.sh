#!/usr/bin/env bash
# cvs's default setup script: makes sure an OpenSSH server (and the ssh
# client that multi-node launchers use) is installed in a freshly launched
# container, so that cvs can start sshd on sshd_port.
# It runs as root inside the container, under bash with errexit and pipefail.
set -euo pipefail

have_sshd() { command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; }

if have_sshd; then
	echo "setup: sshd already installed ($(command -v sshd || echo /usr/sbin/sshd)); nothing to do"
	if ! command -v ssh >/dev/null 2>&1; then
		echo "setup: warning: the image has sshd but no ssh client; steps that ssh between containers (MPI launchers) will fail" >&2
	fi
	exit 0
fi

install_with() {
	echo "setup: installing openssh-server with $1"
}

if command -v apt-get >/dev/null 2>&1; then
	install_with apt-get
	export DEBIAN_FRONTEND=noninteractive
	# Keep the package's own sshd from being started on port 22: in a
	# container on the host's network that port is the host's sshd, and a
	# failed start would fail the install. policy-rc.d is Debian's switch
	# for that; it is removed again unless the image shipped one.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -q
	# openssh-server depends on openssh-client, so ssh comes along.
	apt-get install -y -q --no-install-recommends openssh-server
elif command -v dnf >/dev/null 2>&1; then
	install_with dnf
	dnf install -y -q openssh-server openssh-clients
elif command -v yum >/dev/null 2>&1; then
	install_with yum
	yum install -y -q openssh-server openssh-clients
elif command -v zypper >/dev/null 2>&1; then
	install_with zypper
	zypper --non-interactive install openssh
elif command -v apk >/dev/null 2>&1; then
	install_with apk
	apk add --no-cache openssh-server openssh-client
else
	echo "setup: no supported package manager (apt-get, dnf, yum, zypper, apk) in this image;" >&2
	echo "setup: bake openssh-server into the image or set container.setup_script to a script that installs it" >&2
	exit 1
fi

if ! have_sshd; then
	echo "setup: the package manager succeeded but sshd is still missing" >&2
	exit 1
fi
echo "setup: sshd installed ($(command -v sshd || echo /usr/sbin/sshd))"
