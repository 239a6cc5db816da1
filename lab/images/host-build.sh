#!/bin/sh
# Runs inside a copy of the base root filesystem (chroot, private mount
# namespace) and turns it into a lab host: OpenSSH server, Docker and the
# tools a real node has. Package list: $CVS_LAB_HOST_PACKAGES.
set -eu
mount -t proc proc /proc
# No service may start inside the build chroot.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
apt-get update -q
# shellcheck disable=SC2086 # the package list is split on purpose
apt-get install -y -q --no-install-recommends $CVS_LAB_HOST_PACKAGES
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/resolv.conf
# Each host generates its own host keys at boot (cvs-lab-init); keys baked
# into the image would make every host the same to known_hosts.
rm -f /etc/ssh/ssh_host_*
mkdir -p -m 700 /root/.ssh
