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
PKGS="pdsh clustershell pssh openssh-server openssh-client"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -z "$missing" ]; then
	echo "bench-deps: all packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-deps: missing:$missing; run as root or: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "bench-deps: installing:$missing"

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
echo "bench-deps: done"
