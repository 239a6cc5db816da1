// Package lab runs cvs's multi-host test lab on one machine.
//
// A lab host is a container on the lab's own outer dockerd (its own socket,
// data root, exec root and pidfile; never the machine's default daemon). Each
// host has its own IP address on a bridge network the lab creates, a real
// OpenSSH sshd on port 22 that accepts the lab key, and its own inner dockerd
// with its own image store. A Docker registry on the bridge gateway serves the
// workload images, so `docker run` on a host really pulls. Up writes a cluster
// file and a known_hosts file built from the hosts' real host keys, so cvs can
// run against the lab with host_key_check = "strict".
//
// Images are built offline from a debootstrap root filesystem and cached under
// the lab directory; a cache entry is keyed by a hash of its recipe, so it is
// rebuilt only when missing or when the recipe changes.
//
// Everything the lab creates lives under one directory (Config.Dir). Down
// removes all of it except the caches, and Down with Purge removes the caches
// too. The same operations back the cvs-lab command, the end-to-end tests and
// the benchmarks; fault injection (stopping a host's sshd or dockerd, rotating
// its host key, putting another image under a tag on one host, stopping or
// throttling the registry) is exposed as methods on *Lab.
//
// A Slurm lab (UpWith with UpOptions.Slurm, cvs-lab up N --slurm) adds munged
// and slurmd to every host, slurmctld in a controller container on the bridge,
// and a munged on this machine, so that srun, salloc and sbcast run from here
// with SlurmEnv; see slurm.go.
//
// The lab needs root and the packages that scripts/lab-deps.sh installs (and
// scripts/slurm-deps.sh for a Slurm lab).
package lab
