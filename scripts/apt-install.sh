#!/bin/sh
# apt-install.sh NAME PKG...: installs the Debian packages that are missing,
# for the project's dependency scripts (lab-deps.sh, bench-deps.sh). It is
# idempotent: when every package is present, apt is not touched at all. NAME
# prefixes its messages.
#
# Service starts are denied during the install (policy-rc.d exit 101 is
# Debian's documented way): the lab and the benchmark run their own dockerd
# and sshd processes, and a system daemon started by a package's postinst
# would be one more thing on the machine that nobody asked for.
set -eu
name=$1
shift
PKGS="$*"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "$name: all packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "$name: missing:$missing; run as root, or: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "$name: installing:$missing"

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
echo "$name: done"
