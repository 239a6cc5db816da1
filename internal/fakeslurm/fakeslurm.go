// Package fakeslurm is an srun for unit tests: a shell script that runs
// its tasks on this machine.
package fakeslurm

import (
	"os"
	"path/filepath"
	"testing"
)

// script is an srun that runs its tasks here: one per node of
// --nodelist, each with SLURMD_NODENAME, ranks in the reverse order of the
// list (Slurm's ranks follow its own node order, not the caller's), every
// line of a task's stdout and stderr labelled with its rank as --label
// does (cut every 1024 bytes, as srun's messages are), stdin given to
// every task. A list naming "down" fails the whole step, as Slurm does
// when a node cannot take part; a list naming "dies" starts the tasks on
// the other nodes, then fails the launch on "dies" and aborts the step
// (kills the others), as Slurm does when a node's slurmd is gone but the
// node is still allocated. --export is honoured as srun does. The real
// srun is tested on the Slurm lab.
const script = `#!/bin/bash
nodes= label= export=ALL
while [ $# -gt 0 ]; do
	case "$1" in
	--nodelist=*) nodes=${1#--nodelist=} ;;
	--label) label=1 ;;
	--export=*) export=${1#--export=} ;;
	--nodes=*|--ntasks=*|--ntasks-per-node=1|--overlap|--quiet|--kill-on-bad-exit=*|--input=all) ;;
	--*) echo "srun: error: unexpected option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
echo "$nodes" >> "$SRUN_LOG"
case ",$nodes," in *,down,*) echo "srun: error: Unable to create step for job 7: Requested node configuration is not available" >&2; exit 1 ;; esac
[ -n "$nodes" ] || exit 2
[ "$nodes" = dies ] && { echo "srun: error: Task launch for StepId=7.1 failed on node dies: Communication connection failure" >&2; exit 233; }
# task runs a task on node $1 with the environment --export gives it:
# this one's (ALL), or none of it but the variables named (and SLURM_*),
# the command then found by its absolute path only.
task() {
	local n=$1 keep=() name
	shift
	[ "$export" = ALL ] && SLURMD_NODENAME=$n exec "$@"
	case $1 in /*) ;; *) echo "slurmstepd-$n: error: execve(): $1: No such file or directory" >&2; exit 2 ;; esac
	if [ "$export" != NONE ]; then
		for name in ${export//,/ } $(compgen -e SLURM_); do [ -n "${!name+x}" ] && keep+=("$name=${!name}"); done
	fi
	exec env -i "${keep[@]}" SLURMD_NODENAME="$n" PWD="$PWD" TMPDIR=/tmp "$@"
}
[ -n "$label" ] || task "$nodes" "$@"
# label prefixes each line with the rank, as --label does, after cutting
# it every 1024 bytes: slurmstepd sends a task's output in messages of at
# most 1 KiB (a longer line is cut, and a line of exactly 1 KiB is followed
# by an empty one), and srun prints each message's piece as a line.
label() { LC_ALL=C sed -u -E "s/.{1024}/&\n/g; s/\n/\n$1: /g; s/^/$1: /"; }
# Every task reads all of srun's stdin (--input=all): tee into a fifo each
# (from fd 4: a background job's stdin would be /dev/null).
exec 4<&0
fifos=$(mktemp -d)
trap 'rm -rf "$fifos"' EXIT
rank=0
dies=
pids=
for n in $(echo "$nodes" | tr ',' '\n' | sort -r); do
	[ "$n" = dies ] && { dies=1; continue; }
	mkfifo "$fifos/$rank"
	{ { task "$n" "$@" <"$fifos/$rank" 2>&1 1>&3 | label $rank >&2; } 3>&1 | label $rank; } &
	pids="$pids $!"
	rank=$((rank+1))
done
tee -p "$fifos"/* <&4 >/dev/null &
tee=$!
if [ -n "$dies" ]; then
	sleep 1
	echo "srun: error: Task launch for StepId=7.0 failed on node dies: Communication connection failure" >&2
	echo "srun: Job step aborted" >&2
	kill -KILL -- -$$
fi
wait $pids
kill $tee 2>/dev/null
# srun takes a moment to end the step after its tasks.
sleep 0.2
`

// Srun writes the fake srun into a temporary folder and returns its path
// and the file where it appends each call's node list (one line per call;
// SRUN_LOG in its environment names that file, set by Srun for this
// test).
func Srun(t testing.TB) (bin, calls string) {
	t.Helper()
	dir := t.TempDir()
	bin, calls = filepath.Join(dir, "srun"), filepath.Join(dir, "calls")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SRUN_LOG", calls)
	return bin, calls
}
