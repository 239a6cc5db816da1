#!/usr/bin/env bash
# make demo: the main job of cvs on a local 3-host lab, from a bare machine.
#
#   1. install what the lab needs (Debian packages), build cvs and cvs-lab;
#   2. bring up 3 lab hosts (own IP, sshd, dockerd each) and a registry;
#   3. cvs validate, cvs status;
#   4. cvs run install   (persistent: cold start, setup script installs sshd, install step);
#   5. cvs run test      (attach to the same containers; the head reaches every container over SSH on 2224);
#   6. cvs run test      again, then cvs status: same containers, same StartedAt;
#   7. the last run's record, JUnit XML and HTML report (demo-report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${LAB_HOSTS:-3}
banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

banner "dependencies"
scripts/lab-deps.sh
banner "build"
make --no-print-directory build
banner "lab: bin/cvs-lab up $hosts"
bin/cvs-lab up "$hosts"
eval "$(bin/cvs-lab env)"
export CVS_CLUSTER
cvs=bin/cvs
# A previous demo's containers would turn the cold start into an attach.
$cvs down --force --quiet >/dev/null 2>&1 || true

banner "cvs validate   ($CVS_CLUSTER)"
$cvs validate | head -20
banner "cvs status"
$cvs status
banner "cvs run install   (cold start: launch, provision, sshd, install)"
$cvs run install
banner "cvs run test   (attach: same containers, no provisioning)"
$cvs run test
banner "cvs run test   (and again)"
$cvs run test --quiet
banner "cvs status"
$cvs status
banner "the record of the last run, its JUnit XML and its HTML report"
$cvs history show
$cvs report --junit demo-junit.xml >/dev/null
$cvs report -o demo-report.html >/dev/null
echo "JUnit XML of the last run: $(pwd)/demo-junit.xml; its stored output: bin/cvs logs"
echo "HTML report of the last run (open it in a browser): $(pwd)/demo-report.html"

banner "what happened"
cat <<MSG
Each lab host now runs the persistent container "cvs-lab", started once by
'cvs run install' and attached to by every 'cvs run test' (same container ID
and StartedAt above). Look further:

  export CVS_CLUSTER=$CVS_CLUSTER
  bin/cvs status                          # the table above, again
  bin/cvs exec --group -- docker ps       # on the hosts' OS
  bin/cvs run --dry-run test              # the plan and the stages, changing nothing
  bin/cvs history                         # every run, with its image digest
  bin/cvs logs --host 172.29.0.12         # one host's stored step output
  bin/cvs report                          # the last run's HTML report, into its run folder
  bin/cvs-lab ssh host1 -- docker ps      # a lab host, without cvs
  make demo-down                          # remove the lab (keeps the image cache)
MSG
