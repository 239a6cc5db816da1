package docker

import (
	"sort"
)

// RunSpec is a container to launch.
type RunSpec struct {
	Name   string
	Image  string
	Labels map[string]string
	// EnvFile is a file on the host with the container's environment
	// (docker run --env-file), so values never appear in a command line.
	EnvFile     string
	Network     string
	IPC         string
	PID         string
	Privileged  bool
	Devices     []string
	Volumes     []string
	CapAdd      []string
	SecurityOpt []string
	GroupAdd    []string
	ShmSize     string
	Ulimits     []string
	Sudo        bool
}

// KeepAlive is the container's main process: it idles until stopped and
// exits at once on SIGTERM, so docker stop does not wait for its timeout.
var KeepAlive = []string{"sh", "-c", `trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done`}

// RunArgv returns the argv of `docker run -d` for s.
func RunArgv(s RunSpec) []string {
	// --init: a PID 1 that reaps orphans, since cvs starts daemons (sshd)
	// with docker exec and may stop them again.
	argv := append(Docker(s.Sudo), "run", "-d", "--init", "--name", s.Name)
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, "--label", k+"="+s.Labels[k])
	}
	opt := func(flag, v string) {
		if v != "" {
			argv = append(argv, flag, v)
		}
	}
	opts := func(flag string, vs []string) {
		for _, v := range vs {
			argv = append(argv, flag, v)
		}
	}
	opt("--env-file", s.EnvFile)
	opt("--network", s.Network)
	opt("--ipc", s.IPC)
	opt("--pid", s.PID)
	if s.Privileged {
		argv = append(argv, "--privileged")
	}
	opts("--device", s.Devices)
	opts("--volume", s.Volumes)
	opts("--cap-add", s.CapAdd)
	opts("--security-opt", s.SecurityOpt)
	opts("--group-add", s.GroupAdd)
	opt("--shm-size", s.ShmSize)
	opts("--ulimit", s.Ulimits)
	argv = append(argv, s.Image)
	return append(argv, KeepAlive...)
}
