package docker

// RunSpec is a container to launch.
type RunSpec struct {
	Name  string
	Image string
	// Platform ("os/arch[/variant]", "" the daemon's own) is the platform
	// pulled and run (docker run --platform).
	Platform string
	Labels   map[string]string
	// EnvFile is a file on the host with the container's environment
	// (docker run --env-file), so values never appear in a command line;
	// the Engine API takes Env itself, in the request body.
	EnvFile     string
	Env         map[string]string
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
}

// KeepAlive is the container's main process: it idles until stopped and
// exits at once on SIGTERM, so docker stop does not wait for its timeout.
var KeepAlive = []string{"sh", "-c", `trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done`}
