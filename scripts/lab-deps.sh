#!/bin/sh
# lab-deps.sh installs the Debian packages the cvs test lab needs (see lab/
# and cmd/cvs-lab). It is idempotent: packages already installed are
# skipped, and apt is not touched at all when nothing is missing, so CI and
# `make demo` can call it on every run.
#
# It never starts a system Docker daemon: the lab runs its own dockerd on its
# own socket, and a system daemon started by the package's postinst would be
# one more thing on the machine that the lab did not ask for.
set -eu

# docker.io       the lab's outer dockerd and, inside each host image, the inner one
# openssh-*       ssh/ssh-keygen for the lab; sshd for loopback tests of cvs
# debootstrap     builds the offline root filesystems of the lab images
# apt-utils       apt-ftparchive indexes the offline apt repository
# docker-registry the registry on the lab bridge that hosts pull from
# iproute2        ip/tc: inspect the lab bridge, throttle the registry (fault)
# iptables        required by dockerd
# procps, psmisc  ps/pgrep for checks that no lab process is left behind
PKGS="docker.io openssh-server openssh-client debootstrap apt-utils docker-registry
iproute2 iptables procps psmisc ca-certificates tar gzip"

if [ "$(id -u)" -ne 0 ]; then
	echo "lab-deps: must run as root (apt-get install)" >&2
	exit 1
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "lab-deps: all packages present"
	exit 0
fi
echo "lab-deps: installing:$missing"

# Deny service starts during the install (policy-rc.d exit 101 is Debian's
# documented way); restore whatever policy the machine had afterwards.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
	saved=$(mktemp)
	cp -p "$policy" "$saved"
fi
restore() {
	if [ -n "$saved" ]; then
		mv -f "$saved" "$policy"
	else
		rm -f "$policy"
	fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $missing
echo "lab-deps: done"
