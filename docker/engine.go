package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// Engine is how cvs acts on one host's Docker daemon: the docker CLI run
// through the host's shell (CLIEngine), or the Engine API over the SSH
// connection (package dockerapi). Both keep the same promises, and their
// errors have transport's shapes: *transport.ExitError for a command (or
// docker) that exited non-zero, *transport.TimeoutError at a time limit,
// *transport.HostError when the host or its daemon failed.
type Engine interface {
	// Access is "api" or "cli".
	Access() string
	// Exec runs argv in container and waits for it.
	Exec(ctx context.Context, container string, o ExecOptions, argv []string, io ExecIO) (transport.Result, error)
	// Inspect reads the container named name; ok is false when there is
	// none by that name (never for another container whose ID starts with
	// name).
	Inspect(ctx context.Context, name string) (c Inspected, ok bool, err error)
	// MakeDir creates dir in container, which must not exist yet, owned
	// by root with mode, holding files (root's, with their modes). The
	// content never appears in a command line.
	MakeDir(ctx context.Context, container, dir string, mode os.FileMode, files []File) error
	// PsByLabel lists the IDs of every container, running or not,
	// labelled key=value.
	PsByLabel(ctx context.Context, key, value string) ([]string, error)
	// Remove force-removes containers by ID.
	Remove(ctx context.Context, ids ...string) (transport.Result, error)
	// Start starts a stopped container by ID.
	Start(ctx context.Context, id string) (transport.Result, error)
	// Run creates and starts the container spec describes, pulling its
	// image first when the host lacks it; ctx bounds the whole (the pull
	// timeout). The container's ID is the Result's Stdout.
	Run(ctx context.Context, spec RunSpec) (transport.Result, error)

	// ImageID is the local ID of image ref, "" when the host lacks it.
	ImageID(ctx context.Context, ref string) (string, error)
	// ImageLayers lists every image on the host (intermediate ones
	// included) with the diff IDs of its layers, base first.
	ImageLayers(ctx context.Context) (map[string][]string, error)
	// Tag names the image src also dst.
	Tag(ctx context.Context, src, dst string) error
	// Load loads a docker-save tarball read from r; the daemon checks
	// every layer's digest.
	Load(ctx context.Context, r io.Reader) error
}

// ExecIO is how an Exec command is fed and heard.
type ExecIO struct {
	// Watched runs the command under transport.Watchdog: when ctx ends
	// (time limit, Ctrl-C) the command's process group inside the
	// container is killed too, not only the client.
	Watched bool
	// Stdin, when set, is the command's standard input (a script, key
	// material); it never appears in a command line.
	Stdin []byte
	// Stdout and Stderr, when set, also receive the output as it arrives.
	Stdout, Stderr io.Writer
	// Name is how errors name the command.
	Name string
}

// Inspected is what cvs reads of a container.
type Inspected struct {
	ID, Name  string
	ImageID   string // the image ID it runs
	Status    string // running, exited, ...
	StartedAt string
	User      string // the image's USER ("" is root)
}

// File is a file CopyInto writes.
type File struct {
	Name string // a plain name, no slash
	Data []byte
	Mode os.FileMode
}

// inspectDoc is what cvs reads of `docker container inspect` JSON.
type inspectDoc struct {
	ID    string `json:"Id"`
	Name  string `json:"Name"`
	Image string `json:"Image"`
	State struct {
		Status    string `json:"Status"`
		StartedAt string `json:"StartedAt"`
	} `json:"State"`
	Config struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
		User   string            `json:"User"`
	} `json:"Config"`
}

// ParseInspect reads `docker container inspect` JSON (one object, or a
// list of one) as Inspected, checking that the container is the one named
// name.
func ParseInspect(raw []byte, name string) (Inspected, bool, error) {
	var d inspectDoc
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var list []inspectDoc
		if err := json.Unmarshal(raw, &list); err != nil || len(list) != 1 {
			return Inspected{}, false, fmt.Errorf("docker inspect answered something unreadable: %.200q", raw)
		}
		d = list[0]
	} else if err := json.Unmarshal(raw, &d); err != nil {
		return Inspected{}, false, fmt.Errorf("docker inspect answered something unreadable: %.200q", raw)
	}
	if d.Name != "/"+name {
		return Inspected{}, false, nil
	}
	return Inspected{ID: d.ID, Name: name, ImageID: d.Image, Status: d.State.Status, StartedAt: d.State.StartedAt, User: d.Config.User}, true, nil
}

// Uploader is a host connection that can write files (over SFTP), for
// what must not travel in a command line. transport.Conn is one.
type Uploader interface {
	Upload(ctx context.Context, remotePath string, r io.Reader, mode os.FileMode) error
}

// CLIEngine runs the docker CLI on the host through its shell: every call
// starts a docker process there.
type CLIEngine struct {
	CLI
	// Host runs the commands; for a standard input and CopyInto it must
	// also be an Uploader.
	Host transport.Runner
}

// upload writes a file on the host.
func (e CLIEngine) upload(ctx context.Context, file string, data []byte, mode os.FileMode) error {
	u, ok := e.Host.(Uploader)
	if !ok {
		return fmt.Errorf("this connection cannot upload files")
	}
	return u.Upload(ctx, file, bytes.NewReader(data), mode)
}

var _ Engine = CLIEngine{}

// Access is "cli".
func (CLIEngine) Access() string { return "cli" }

// Exec runs docker exec on the host. Stdin travels over SFTP into a
// private temporary folder on the host, removed afterwards, and from there
// on docker exec's standard input.
func (e CLIEngine) Exec(ctx context.Context, container string, o ExecOptions, argv []string, eio ExecIO) (transport.Result, error) {
	cmd := transport.Command{Stdout: eio.Stdout, Stderr: eio.Stderr, Name: eio.Name}
	switch {
	case eio.Watched && eio.Stdin != nil:
		return transport.Result{ExitCode: -1}, fmt.Errorf("docker exec: a watched command cannot also read a standard input")
	case eio.Watched:
		cmd.Line, cmd.ForwardStdin = e.ExecWatched(container, o, shell.Join(argv...)), true
		return e.Host.Run(ctx, cmd)
	case eio.Stdin != nil:
		dir, err := transport.MakeTempDir(ctx, e.Host, "cvs-stdin", eio.Stdin)
		if err != nil {
			return transport.Result{ExitCode: -1}, fmt.Errorf("creating a temporary folder on the host: %w", err)
		}
		res, err := transport.Result{ExitCode: -1}, error(nil)
		file := path.Join(dir, "stdin")
		if err = e.upload(ctx, file, eio.Stdin, 0o600); err != nil {
			err = fmt.Errorf("uploading the command's input: %w", err)
		} else {
			o.Interactive = true
			cmd.Line = shell.Join(e.CLI.Exec(container, o, argv...)...) + " < " + shell.Quote(file)
			res, err = e.Host.Run(ctx, cmd)
		}
		if rerr := transport.RemoveTempDir(ctx, e.Host, dir); rerr != nil && err == nil {
			return res, fmt.Errorf("removing %s on the host (it held a command's input: remove it by hand): %w", dir, rerr)
		}
		return res, err
	}
	cmd.Line = shell.Join(e.CLI.Exec(container, o, argv...)...)
	return e.Host.Run(ctx, cmd)
}

// read runs a docker command that only reads: safe to run twice
// (transport.Command.Rerun).
func (e CLIEngine) read(ctx context.Context, argv []string) (transport.Result, error) {
	return e.Host.Run(ctx, transport.Command{Line: Line(argv), Rerun: true})
}

// Inspect runs docker container inspect.
func (e CLIEngine) Inspect(ctx context.Context, name string) (Inspected, bool, error) {
	res, err := e.read(ctx, e.InspectContainer(name, ""))
	if err != nil {
		if isNoSuch(string(res.Stderr)) {
			return Inspected{}, false, nil
		}
		return Inspected{}, false, err
	}
	return ParseInspect(res.Stdout, name)
}

// MakeDir runs mkdir -m in the container (which fails if dir exists),
// uploads the files over SFTP (0600) into a private (0700) folder on the
// host, docker cp's each into dir, and removes the folder.
func (e CLIEngine) MakeDir(ctx context.Context, container, dir string, mode os.FileMode, files []File) (err error) {
	if _, err := e.Exec(ctx, container, Root, []string{"mkdir", "-m", fmt.Sprintf("%o", mode.Perm()), dir}, ExecIO{}); err != nil {
		return fmt.Errorf("making %s in the container: %w", dir, err)
	}
	forWhat := [][]byte{[]byte(container), []byte(dir)}
	for _, f := range files {
		forWhat = append(forWhat, []byte(f.Name), f.Data)
	}
	tmp, err := transport.MakeTempDir(ctx, e.Host, "cvs-copy", forWhat...)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := transport.RemoveTempDir(ctx, e.Host, tmp); cerr != nil && err == nil {
			err = fmt.Errorf("removing %s: %w", tmp, cerr)
		}
	}()
	for _, f := range files {
		if strings.Contains(f.Name, "/") {
			return fmt.Errorf("copy into the container: %q is not a plain file name", f.Name)
		}
		src := path.Join(tmp, f.Name)
		if err := e.upload(ctx, src, f.Data, f.Mode.Perm()); err != nil {
			return err
		}
		if _, err := e.Host.Run(ctx, transport.Command{Line: Line(e.CLI.CopyInto(src, container, path.Join(dir, f.Name)))}); err != nil {
			return fmt.Errorf("docker cp into the container: %w", err)
		}
	}
	return nil
}

// PsByLabel runs docker ps.
func (e CLIEngine) PsByLabel(ctx context.Context, key, value string) ([]string, error) {
	res, err := e.read(ctx, e.CLI.PsByLabel(key, value))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(res.Stdout)), nil
}

// Remove runs docker rm -f.
func (e CLIEngine) Remove(ctx context.Context, ids ...string) (transport.Result, error) {
	return e.Host.Run(ctx, transport.Command{Line: Line(e.CLI.Remove(ids...))})
}

// CreateTimeout bounds creating and starting a container whose image is
// on the host. That is not cut short when the caller's context ends: a
// daemon whose client is gone still creates the container, and the
// caller's cleanup must find it when Run returns.
const CreateTimeout = 2 * time.Minute

// Run runs docker run -d; the environment comes from spec.EnvFile. When
// the host holds the image, docker run only creates and starts, and runs
// to its end even when ctx ends meanwhile (within CreateTimeout); Run then
// returns ctx's error, after what docker run created exists. When it must
// pull, docker run runs within ctx, so that the pull is stopped.
func (e CLIEngine) Run(ctx context.Context, spec RunSpec) (transport.Result, error) {
	cmd := transport.Command{Line: Line(e.CLI.Run(spec))}
	if id, err := e.ImageID(ctx, spec.Image); err != nil || id == "" || ctx.Err() != nil {
		return e.Host.Run(ctx, cmd) // ended already: refused at once
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CreateTimeout)
	defer cancel()
	res, err := e.Host.Run(cctx, cmd)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, &transport.TimeoutError{Cmd: "docker run " + spec.Name}
	case ctx.Err() != nil:
		return res, fmt.Errorf("docker run %s: %w", spec.Name, ctx.Err())
	}
	return res, err
}

// ImageID runs docker image inspect.
func (e CLIEngine) ImageID(ctx context.Context, ref string) (string, error) {
	res, err := e.read(ctx, e.InspectImage(ref, "{{.Id}}"))
	if err != nil {
		if isNoSuch(string(res.Stderr)) {
			return "", nil
		}
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// ImageLayers runs docker image ls, then docker image inspect.
func (e CLIEngine) ImageLayers(ctx context.Context) (map[string][]string, error) {
	res, err := e.read(ctx, e.ImageIDs())
	if err != nil {
		return nil, fmt.Errorf("listing the host's images: %w", err)
	}
	ids := strings.Fields(string(res.Stdout))
	out := make(map[string][]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	res, err = e.read(ctx, e.CLI.ImageLayers(ids...))
	if err != nil {
		return nil, fmt.Errorf("reading the host's layers: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	for i, id := range ids {
		var diffs []string
		if i < len(lines) {
			json.Unmarshal([]byte(lines[i]), &diffs)
		}
		out[id] = diffs
	}
	return out, nil
}

// Tag runs docker tag.
func (e CLIEngine) Tag(ctx context.Context, src, dst string) error {
	_, err := e.Host.Run(ctx, transport.Command{Line: Line(e.CLI.Tag(src, dst))})
	return err
}

// Load streams the tarball over SFTP into a private folder on the host
// (removed afterwards) and runs docker load on it.
func (e CLIEngine) Load(ctx context.Context, r io.Reader) error {
	u, ok := e.Host.(Uploader)
	if !ok {
		return fmt.Errorf("this connection cannot upload files")
	}
	dir, err := transport.MakeTempDir(ctx, e.Host, "cvs-push")
	if err != nil {
		return err
	}
	defer transport.RemoveTempDir(ctx, e.Host, dir)
	file := dir + "/image.tar"
	if err := u.Upload(ctx, file, r, 0o600); err != nil {
		return fmt.Errorf("sending the image: %w", err)
	}
	if _, err := e.Host.Run(ctx, transport.Command{Line: Line(e.CLI.Load(file))}); err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	return nil
}

// Start runs docker start.
func (e CLIEngine) Start(ctx context.Context, id string) (transport.Result, error) {
	return e.Host.Run(ctx, transport.Command{Line: Line(e.CLI.Start(id))})
}
