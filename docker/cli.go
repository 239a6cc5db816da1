package docker

import (
	"sort"
	"strings"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// CLI builds the argv of every docker command cvs runs on a host: the one
// place that knows docker's flags. With Sudo, commands go through `sudo -n`
// (never prompting). The builders only build; transport runs the result,
// joined with shell.Join.
type CLI struct {
	Sudo bool
}

func (d CLI) cmd(args ...string) []string {
	if d.Sudo {
		return append([]string{"sudo", "-n", "docker"}, args...)
	}
	return append([]string{"docker"}, args...)
}

// Version asks the daemon (not only the client) for its version.
func (d CLI) Version() []string {
	return d.cmd("version", "--format", "{{.Server.Version}}")
}

// Run is `docker run -d` for s: the container idles under --init (a PID 1
// that reaps orphans, since cvs starts daemons such as sshd with docker
// exec) until it is stopped.
func (d CLI) Run(s RunSpec) []string {
	argv := d.cmd("run", "-d", "--init", "--name", s.Name)
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
	opt("--platform", s.Platform)
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

// Start starts a stopped container (by ID: a name could also be read as an
// ID prefix).
func (d CLI) Start(id string) []string { return d.cmd("start", id) }

// Remove force-removes containers by ID.
func (d CLI) Remove(ids ...string) []string { return d.cmd(append([]string{"rm", "-f"}, ids...)...) }

// PsByLabel lists the IDs of every container, running or not, carrying
// label key=value.
func (d CLI) PsByLabel(key, value string) []string {
	return d.cmd("ps", "-aq", "--no-trunc", "--filter", "label="+key+"="+value)
}

// InspectContainer prints docker's JSON for the container, or with a
// format only that template. Docker resolves a name that is all hex also
// as an ID prefix of another container: callers check the answer's name
// (ParseNamed, or the Name field of the JSON).
func (d CLI) InspectContainer(name, format string) []string {
	if format == "" {
		return d.cmd("container", "inspect", name)
	}
	return d.cmd("container", "inspect", "--format", format, name)
}

// InspectNamed prints "NAME<TAB>value" for the container, value being the
// template field (e.g. "{{.State.Status}}"); ParseNamed reads the answer.
func (d CLI) InspectNamed(name, field string) []string {
	return d.InspectContainer(name, "{{.Name}}\t"+field)
}

// ParseNamed reads InspectNamed's answer: the value, and whether the
// container that answered really is the one named name (not another
// container whose ID starts with name).
func ParseNamed(out, name string) (string, bool) {
	got, value, ok := strings.Cut(strings.TrimRight(out, "\r\n"), "\t")
	return value, ok && got == "/"+name
}

// InspectImage prints the local image's JSON, or with a format only that
// template.
func (d CLI) InspectImage(ref, format string) []string {
	if format == "" {
		return d.cmd("image", "inspect", ref)
	}
	return d.cmd("image", "inspect", "--format", format, ref)
}

// Pull pulls ref from its registry, printing only the digest; platform
// ("os/arch[/variant]", "" the daemon's own) picks the image of an index.
func (d CLI) Pull(ref, platform string) []string {
	if platform != "" {
		return d.cmd("pull", "--quiet", "--platform", platform, ref)
	}
	return d.cmd("pull", "--quiet", ref)
}

// Tag names the image src also dst.
func (d CLI) Tag(src, dst string) []string { return d.cmd("tag", src, dst) }

// ImageIDs lists the full IDs of every image on the host, intermediate
// ones included.
func (d CLI) ImageIDs() []string { return d.cmd("image", "ls", "-aq", "--no-trunc") }

// ImageLayers prints, per image, the diff IDs of its layers as a JSON list
// (base first), one line each.
func (d CLI) ImageLayers(ids ...string) []string {
	return d.cmd(append([]string{"image", "inspect", "--format", "{{json .RootFS.Layers}}"}, ids...)...)
}

// Load loads a docker-save tarball that is a file on the host.
func (d CLI) Load(file string) []string { return d.cmd("load", "-q", "-i", file) }

// CopyInto copies a file of the host into the container (docker cp; the
// copy is owned by root).
func (d CLI) CopyInto(src, container, dst string) []string {
	return d.cmd("cp", src, container+":"+dst)
}

// ExecOptions are docker exec's flags cvs uses.
type ExecOptions struct {
	// Interactive keeps stdin open (-i): a script on stdin, or the
	// end-of-file that stops a watched command.
	Interactive bool
	// User runs the command as this user or UID (-u); empty: the image's
	// USER.
	User string
}

// Root is ExecOptions for cvs's own work in a container (checks, staging,
// cleanup), which must not depend on the image's USER.
var Root = ExecOptions{User: "0"}

// Exec runs argv in the container.
func (d CLI) Exec(container string, o ExecOptions, argv ...string) []string {
	out := d.cmd("exec")
	if o.Interactive {
		out = append(out, "-i")
	}
	if o.User != "" {
		out = append(out, "-u", o.User)
	}
	out = append(out, container)
	return append(out, argv...)
}

// ExecWatched returns the command line that runs line in the container
// under transport.Watchdog, with `docker exec -i` passing cvs's
// end-of-file through: when cvs stops the command (time limit, Ctrl-C),
// the process group inside the container is killed too, not only the
// docker client on the host. Use it with transport.Command.ForwardStdin.
func (d CLI) ExecWatched(container string, o ExecOptions, line string) string {
	o.Interactive = true
	return shell.Join(d.Exec(container, o, "sh", "-c", transport.Watchdog, "cvs", line)...)
}

// Line joins argv for the remote shell.
func Line(argv []string) string { return shell.Join(argv...) }
