#!/bin/sh
# Runs inside the base root filesystem (chroot, private mount namespace) and
# downloads, without installing, $CVS_LAB_APT_PACKAGES and every dependency
# the base lacks, recommends included (the default of apt-get install), into
# /var/cache/apt/archives. Resolving against the base's own dpkg status is
# what makes the repository complete for the workload image, which is that
# same base.
set -eu
mount -t proc proc /proc
apt-get clean
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --download-only $CVS_LAB_APT_PACKAGES
rm -f /etc/resolv.conf
