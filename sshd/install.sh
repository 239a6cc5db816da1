# The fixed part of the script cvs runs inside a container, through
# `docker exec -i CONTAINER sh -s`, to install the cluster's SSH key
# material and start sshd. The header cvs generates before it sets $port,
# $dir, $pidfile and $log and defines write_files. POSIX sh: the image's
# sh may be dash or busybox. Every command that could read stdin reads
# /dev/null instead, since stdin is this script.
# Exit codes cvs reads: 3 sshd missing, 4 configuration refused, 5 sshd
# failed to start.

sshd_bin=
for c in /usr/sbin/sshd "$(command -v sshd 2>/dev/null || :)"; do
	case $c in /*) if [ -x "$c" ]; then sshd_bin=$c; break; fi ;; esac
done
if [ -z "$sshd_bin" ]; then
	echo "cvs: sshd is not installed in the container" >&2
	exit 3
fi

mkdir -p "$dir"
chmod 700 "$dir"
write_files
chmod 600 "$dir"/*

# ssh keeps the first value it reads for each option, so the Include goes
# on the first line of root's config, ahead of whatever the image has.
mkdir -p /root/.ssh
chmod 700 /root/.ssh
cfg=/root/.ssh/config
inc="Include $dir/ssh_config"
first=
if [ -f "$cfg" ]; then IFS= read -r first <"$cfg" || :; fi
if [ "$first" != "$inc" ]; then
	{
		printf '%s\n' "$inc"
		if [ -f "$cfg" ]; then cat "$cfg"; fi
	} >"$cfg.cvs-new"
	mv -f "$cfg.cvs-new" "$cfg"
fi
chmod 600 "$cfg"

# The privilege separation folder Debian's sshd wants; sshd -t checks it.
mkdir -p /run/sshd
chmod 755 /run/sshd

if ! out=$("$sshd_bin" -t -f "$dir/sshd_config" 2>&1 </dev/null); then
	printf '%s\n' "$out" >&2
	exit 4
fi

# An sshd cvs started earlier with this configuration (on a port since
# changed, or wedged) still holds the pid file: stop it. The pid is checked
# against the process's command line, so a recycled pid is left alone.
if [ -f "$pidfile" ]; then
	pid=$(cat "$pidfile" 2>/dev/null || :)
	case $pid in
	'' | *[!0-9]*) ;;
	*)
		cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || :)
		case $cmd in *"$dir/sshd_config"*)
			kill "$pid" 2>/dev/null || :
			# Let it release the port before the new one binds it.
			i=0
			while [ -d "/proc/$pid" ] && [ $i -lt 50 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1)); done
			;;
		esac
		;;
	esac
fi

rm -f "$log"
# sshd forks into the background once its configuration is read; what goes
# wrong after that (a port already taken) is only in its log.
if ! "$sshd_bin" -f "$dir/sshd_config" -E "$log" </dev/null; then
	cat "$log" >&2 2>/dev/null || :
	exit 5
fi
echo "cvs: started $sshd_bin on port $port"
