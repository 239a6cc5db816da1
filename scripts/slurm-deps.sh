#!/bin/sh
# slurm-deps.sh installs what this machine needs to act as a Slurm client of
# the Slurm lab (cvs-lab up N --slurm): srun, salloc, sbcast, sinfo from
# slurm-client, and munge, whose munged the lab runs on this machine with the
# lab's own key and socket (under the lab directory). Idempotent, like
# lab-deps.sh; no system munged or slurm daemon is started (policy-rc.d).
#
# The lab hosts get slurmd, slurmctld and munge inside their image
# (cvs-lab/host-slurm), not from this script.
set -eu

# slurm-client  srun, salloc, sbcast, sinfo, squeue, scontrol (Slurm 22.05,
#               the same version as in the lab image)
# munge         munged for this machine's side of the lab's authentication
# util-linux    setpriv: starts munged as the munge user
PKGS="slurm-client munge util-linux"

exec "$(dirname "$0")/apt-install.sh" slurm-deps $PKGS
