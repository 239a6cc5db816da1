#!/usr/bin/env bash
# timed.sh NAME COMMAND...: runs COMMAND and says how long the tier NAME
# took (make test prints one line per tier).
name=$1; shift
start=$(date +%s)
"$@"; rc=$?
printf '== tier %s: %ds, %s\n' "$name" "$(( $(date +%s) - start ))" "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")"
exit $rc
