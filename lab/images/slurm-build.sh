#!/bin/sh
# slurm-build.sh PKG... runs in a container of the lab host image (on the
# lab's outer daemon, with the machine's network for the Debian mirror) and
# adds Slurm to it: slurmd, slurmctld, the client commands and munge. The
# container is then committed as cvs-lab/host-slurm. Nothing is started and
# no key is baked in: each lab generates its own munge key and cvs-lab-slurm
# installs it at start.
set -eu
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y -q --no-install-recommends "$@"
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/munge/munge.key \
	/etc/slurm/slurm.conf "$0"
mkdir -p /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
