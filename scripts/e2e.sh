#!/usr/bin/env bash
# The end-to-end tier (make test-e2e): three passes on three labs, side by
# side, so that the README's test command stays within 15 minutes on a
# 2-core machine without dropping a test.
#
#   lane a, lane b  two 3-host labs. Each runs the API pass (SSH and the
#                   Engine API, every test), then the CLI pass
#                   (CVS_DOCKER_ACCESS=cli, the tests whose behaviour depends
#                   on how cvs talks to Docker). The two lanes share the
#                   tests: each test runs in the lane that claims it first
#                   (CVS_E2E_CLAIMS), so every test of a pass runs once.
#   lane s          a 3-host Slurm lab: the lab package's Slurm test, then
#                   the Slurm pass (CVS_E2E_ENGINE=slurm, the tests whose
#                   behaviour depends on how a command reaches a host).
#
# Lab a builds the lab images (on a fresh machine); labs b and s take them
# from it (CVS_LAB_SEED) once it is up. Which pass runs which test: runsIn
# in e2e/main_test.go. Each lane brings
# its lab up once for its passes and takes it down at the end, also when a
# pass fails or the script is interrupted. The logs are in CVS_E2E_LOGS
# (default /tmp/cvs-e2e); a failed pass's log is printed, and a table says
# how long each pass took.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
logs=${CVS_E2E_LOGS:-/tmp/cvs-e2e}
rm -rf "$logs"
mkdir -p "$logs/claims"
export CVS_REQUIRE_BROWSER=1
gotest=("$GO" test -tags e2e -count=1 -timeout 40m)

# One cvs binary and one compile of the test packages for every lane (five
# go test runs compiling the same packages at once cost minutes of CPU).
"$GO" build -o "$logs/cvs" ./cmd/cvs || exit 1
export CVS_E2E_CVS="$logs/cvs"
"$GO" test -tags e2e -c -o "$logs/" ./e2e/ ./lab/ >/dev/null || exit 1

lab_a=(CVS_LAB_DIR=/var/tmp/cvs-lab CVS_LAB_SUBNET=172.29.0.0/24)
lab_b=(CVS_LAB_DIR=/var/tmp/cvs-lab-b CVS_LAB_SUBNET=172.26.0.0/24)
lab_s=(CVS_LAB_DIR=/var/tmp/cvs-slurm-lab CVS_LAB_SUBNET=172.30.0.0/24)

# pass LANE NAME ENV... -- ARGS...: one go test run, its log and its time.
pass() {
	local lane=$1 name=$2; shift 2
	local env=()
	while [ "$1" != "--" ]; do env+=("$1"); shift; done
	shift
	local log="$logs/$lane-$name.log" start=$(date +%s) rc=0
	env "${env[@]}" "${gotest[@]}" "$@" >"$log" 2>&1 || rc=$?
	echo "$lane $name $(( $(date +%s) - start )) $rc $log" >>"$logs/times"
	return $rc
}

# lane NAME UP-ARGS LAB-ENV...: bring the lab up, run the lane's passes,
# take the lab down whatever happened.
lane() {
	local name=$1 up=$2; shift 2
	local labenv=("$@") rc=0 start=$(date +%s)
	if [ "$name" != a ]; then
		# Lab a builds the images (a fresh machine: minutes); the others
		# take them from it (CVS_LAB_SEED) instead of building them again.
		while [ ! -e "$logs/a-up" ]; do sleep 2; done
		labenv+=(CVS_LAB_SEED=/var/tmp/cvs-lab)
	fi
	# The lane runs in a subshell of its own: its EXIT is the lane's end.
	trap "env ${labenv[*]} bin/cvs-lab down >>$logs/$name-lab.log 2>&1" EXIT
	env "${labenv[@]}" bin/cvs-lab up 3 $up >"$logs/$name-lab.log" 2>&1 || rc=1
	echo "$name lab-up $(( $(date +%s) - start )) $rc $logs/$name-lab.log" >>"$logs/times"
	[ "$name" = a ] && touch "$logs/a-up"
	[ $rc = 0 ] || return 1
	local reuse=("${labenv[@]}" CVS_LAB_REUSE=1)
	if [ "$name" = s ]; then
		pass s lab-pkg "${reuse[@]}" CVS_SLURM_LAB_DIR=/var/tmp/cvs-slurm-lab CVS_SLURM_LAB_SUBNET=172.30.0.0/24 CVS_SLURM_LAB_REUSE=1 -- ./lab/... || rc=1
		pass s slurm "${reuse[@]}" CVS_E2E_ENGINE=slurm -- ./e2e/... || rc=1
	else
		pass "$name" api "${reuse[@]}" CVS_E2E_CLAIMS="$logs/claims" -- ./e2e/... || rc=1
		pass "$name" cli "${reuse[@]}" CVS_E2E_CLAIMS="$logs/claims" CVS_DOCKER_ACCESS=cli -- ./e2e/... || rc=1
	fi
	return $rc
}

start=$(date +%s)
pids=()
(lane a "" "${lab_a[@]}") & pids+=($!)
(lane b "" "${lab_b[@]}") & pids+=($!)
(lane s --slurm "${lab_s[@]}") & pids+=($!)
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done

while read -r l p s r log; do
	if [ "$r" != 0 ]; then
		printf '\n==== lane %s, %s: failed (%s)\n' "$l" "$p" "$log"
		cat "$log"
	fi
done <"$logs/times"
printf '\nend-to-end tier (logs in %s):\n' "$logs"
printf '  %-5s %-7s %7s  %s\n' LANE PASS SECONDS RESULT
while read -r l p s r log; do
	printf '  %-5s %-7s %7s  %s\n' "$l" "$p" "$s" "$([ "$r" = 0 ] && echo ok || echo FAILED)"
done <"$logs/times"
printf '  %d tests claimed by lanes a and b; %ds in all\n' "$(ls "$logs/claims" | wc -l)" "$(( $(date +%s) - start ))"
printf 'slowest tests of lanes a and b (seconds):\n'
for f in "$logs"/claims/*; do
	s=$(sed -n 2p "$f" | cut -d' ' -f1)
	echo "${s:-?} $(basename "$f")"
done | sort -rn | head -10 | sed 's/^/  /'

exit $rc
