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
# chromium        the headless browser the tests open cvs report's HTML page in
#                 (history, e2e), to check what a reader sees, not the source
# libxml2-utils   xmllint, which validates cvs's JUnit XML against the JUnit schema
PKGS="docker.io openssh-server openssh-client debootstrap apt-utils docker-registry
iproute2 iptables procps psmisc ca-certificates tar gzip chromium libxml2-utils"

exec "$(dirname "$0")/apt-install.sh" lab-deps $PKGS
