#!/usr/bin/env bash
# cvs's default setup script: makes sure an OpenSSH server is installed in a
# freshly launched container, so that cvs can start sshd on sshd_port.
# It runs as root inside the container, under `set -euo pipefail`.
set -euo pipefail

if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then
	echo "setup: sshd already installed ($(command -v sshd || echo /usr/sbin/sshd)); nothing to do"
	exit 0
fi

install_with() {
	echo "setup: installing openssh-server with $1"
}

if command -v apt-get >/dev/null 2>&1; then
	install_with apt-get
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends openssh-server
elif command -v dnf >/dev/null 2>&1; then
	install_with dnf
	dnf install -y -q openssh-server
elif command -v yum >/dev/null 2>&1; then
	install_with yum
	yum install -y -q openssh-server
elif command -v zypper >/dev/null 2>&1; then
	install_with zypper
	zypper --non-interactive install openssh
elif command -v apk >/dev/null 2>&1; then
	install_with apk
	apk add --no-cache openssh-server
else
	echo "setup: no supported package manager (apt-get, dnf, yum, zypper, apk) in this image;" >&2
	echo "setup: bake openssh-server into the image or set container.setup_script to a script that installs it" >&2
	exit 1
fi

if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
	echo "setup: the package manager succeeded but sshd is still missing" >&2
	exit 1
fi
echo "setup: sshd installed"
