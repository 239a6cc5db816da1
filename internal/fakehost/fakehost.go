// Package fakehost is one host with a Docker daemon, as far as cvs can tell
// over a transport.Conn: it reads back the command lines cvs sends (built
// by docker.CLI and shell.Join), answers them from its state, keeps the
// containers they make, and records every command. Unit tests of session,
// lifetime, suite, provision and sshd use it instead of private fakes; the
// real thing is tested end to end on the lab.
package fakehost

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/images"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// Container is a container on the fake host.
type Container struct {
	ID, Name, Image string // Image: the image ID it runs
	Ref             string // the reference it was launched from
	State           string // running, exited, created, paused
	Labels          map[string]string
	StartedAt       string
	// Provisioned counts setup scripts run in it; SSHD says whether cvs's
	// sshd runs in it.
	Provisioned int
	SSHD        bool
	Files       map[string][]byte // copied in with docker cp
	// Meta is the owner and mode of each file and folder cvs made in the
	// container (docker cp, mkdir, chown, chmod).
	Meta map[string]File
	// User is the image's USER (docker inspect .Config.User).
	User string
	// Record is the provisioning record a successful setup script left
	// ("sha256=...\ncvs=...\ntime=...").
	Record string
	// SSHDFiles is what cvs's sshd check reads of the files the sshd
	// install wrote (authorized_keys, known_hosts, sshd_config).
	SSHDFiles string
}

// File is the owner and mode of a path in a container.
type File struct {
	Owner string // user as given to chown, "0" for root
	Mode  os.FileMode
	Dir   bool
}

// Host is a fake host. Set the exported fields before use; read state
// with the methods (they lock).
type Host struct {
	Name string
	// Images maps a reference to the local image ID (docker image inspect).
	Images map[string]string
	// DockerVersion is the daemon's version; "" with NoDocker false means
	// "20.10.24".
	DockerVersion string
	// NoDocker: no docker command on the host.
	NoDocker bool
	// ImageUser is the USER of the images: containers launched here run as
	// it.
	ImageUser string
	// PullAs is the image ID docker run pulls for a reference the host does
	// not hold; "" means the registry has no such image.
	PullAs string
	// Layers are the diff IDs (base first) of the images the host holds,
	// by image ID: what docker load can complete a partial tarball from.
	Layers map[string][]string
	// NoPartialLoad: docker load needs every layer in the tarball (the
	// containerd image store).
	NoPartialLoad bool
	// MachineID is /etc/machine-id ("" : one made from the name);
	// ClockOffset is how far the host's clock is off; PortBusy: something
	// listens on port 2224 of the host's network.
	MachineID   string
	ClockOffset time.Duration
	PortBusy    bool
	// DiskFreeKiB is the free space under /var/lib/docker (0: 100 GiB).
	DiskFreeKiB int64
	// Arch is what uname -m prints ("": x86_64).
	Arch string

	// Faults: the named operation exits non-zero with this stderr.
	FailRun, FailRm, FailProvision, FailSSHD, FailCopy string
	// FailRemoveFile: rm -f -- PATH (a file cvs put on the host) exits
	// non-zero with this stderr.
	FailRemoveFile string
	// FailRunAfterCreate: docker run creates the container, then fails to
	// start it (exit 125 with this stderr), leaving it "created".
	FailRunAfterCreate string
	// Step answers a step's script (its text as uploaded): output and exit
	// status. Nil: exit 0 with no output.
	Step func(script string) (stdout string, code int)
	// OnProbe, when set, is called as the probe arrives, before it is
	// answered.
	OnProbe func()
	// OnCommand, when set, runs before each command is answered (to
	// cancel a context mid-stage, say).
	OnCommand func(argv []string)

	mu         sync.Mutex
	lockDrop   chan struct{}
	containers map[string]*Container // by ID
	next       int
	lines      []string
	uploads    map[string]Upload
	removed    map[string]bool
	tempDirs   map[string]time.Time // made by MakeTempDir (when), not removed yet
}

// Upload is a file written over SFTP.
type Upload struct {
	Data []byte
	Mode os.FileMode
}

// New returns an empty host that holds the image ref (with ID imageID).
func New(name, ref, imageID string) *Host {
	return &Host{Name: name, Images: map[string]string{ref: imageID}}
}

var _ transport.Conn = (*Host)(nil)

// AddTempDir puts a temporary folder on the host, last changed at
// changed (as an earlier cvs left it).
func (h *Host) AddTempDir(dir string, changed time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	h.tempDirs[dir] = changed
}

// TempDirs lists the temporary folders on the host, sorted.
func (h *Host) TempDirs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for d := range h.tempDirs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// HostName is h.Name (transport.Named).
func (h *Host) HostName() string { return h.Name }

// AddContainer puts a container on the host (as an earlier run left it).
func (h *Host) AddContainer(c Container) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	if c.ID == "" {
		h.next++
		c.ID = fmt.Sprintf("%064x", h.seed()+h.next)
	}
	if c.Files == nil {
		c.Files = map[string][]byte{}
	}
	if c.Meta == nil {
		c.Meta = map[string]File{}
	}
	h.containers[c.ID] = &c
}

// Container returns a copy of the container named name, if any.
func (h *Host) Container(name string) (Container, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.byName(name); c != nil {
		cp := *c
		return cp, true
	}
	return Container{}, false
}

// SetSSHDFiles replaces what every container's sshd was given, as if the
// cluster's keys had changed since.
func (h *Host) SetSSHDFiles(files string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.containers {
		c.SSHDFiles = files
	}
}

// Containers counts the containers on the host.
func (h *Host) Containers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.containers)
}

// Lines returns every command line received, in order.
func (h *Host) Lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// Uploads returns the files written over SFTP, by path.
func (h *Host) Uploads() map[string]Upload {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]Upload{}
	for k, v := range h.uploads {
		out[k] = v
	}
	return out
}

// Removed reports whether path was removed with rm -rf after its upload.
func (h *Host) Removed(path string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.removed[path]
}

func (h *Host) init() {
	if h.containers == nil {
		h.containers = map[string]*Container{}
		h.uploads = map[string]Upload{}
		h.removed = map[string]bool{}
		h.tempDirs = map[string]time.Time{}
	}
}

// seed makes container IDs differ between hosts.
func (h *Host) seed() int {
	n := 0
	for _, c := range h.Name {
		n = n*31 + int(c)
	}
	return (n & 0xffff) << 16
}

func (h *Host) byName(name string) *Container {
	for _, c := range h.containers {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// byRef finds a container by full ID, name or ID prefix, as docker does.
func (h *Host) byRef(ref string) *Container {
	if c, ok := h.containers[ref]; ok {
		return c
	}
	if c := h.byName(ref); c != nil {
		return c
	}
	for id, c := range h.containers {
		if strings.HasPrefix(id, ref) {
			return c
		}
	}
	return nil
}

// Alive is always true: the fake never drops.
func (h *Host) Alive() bool { return true }

// Close does nothing.
func (h *Host) Close() error { return nil }

// Upload records a file written over SFTP.
func (h *Host) Upload(ctx context.Context, path string, r io.Reader, mode os.FileMode) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.init()
	h.uploads[path] = Upload{Data: data, Mode: mode}
	return ctx.Err()
}

// Run answers one command line.
func (h *Host) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	h.mu.Lock()
	h.init()
	h.lines = append(h.lines, cmd.Line)
	h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return transport.Result{ExitCode: -1}, err
	}
	if strings.Contains(cmd.Line, mark) {
		if h.OnProbe != nil {
			h.OnProbe()
		}
		return h.probe(cmd.Line)
	}
	argv, ok := shell.Split(cmd.Line)
	if !ok {
		// sshd's install: `docker exec -i -u 0 C sh -s < FILE`.
		if before, file, found := strings.Cut(cmd.Line, " < "); found {
			if argv, ok = shell.Split(before); ok {
				argv = append(argv, "<", file)
			}
		}
	}
	if !ok {
		return h.exit(cmd, 2, "fakehost: cannot read the command line")
	}
	if h.OnCommand != nil {
		h.OnCommand(argv)
	}
	if len(argv) >= 3 && argv[0] == "sudo" && argv[1] == "-n" {
		argv = argv[2:]
	}
	switch {
	case len(argv) >= 4 && argv[0] == "sh" && argv[1] == "-c" && argv[3] == "cvs-lock":
		return h.lock(ctx, cmd)
	case len(argv) == 6 && argv[0] == "sh" && argv[3] == transport.TempScriptName:
		// MakeTempDir: the name asked for, or a fresh one when it exists.
		h.mu.Lock()
		defer h.mu.Unlock()
		dir := "/tmp/" + argv[4]
		if _, ok := h.tempDirs[dir]; ok {
			h.next++
			dir = fmt.Sprintf("/tmp/%s.fake%06d", strings.TrimSuffix(argv[5], ".XXXXXXXXXX"), h.next)
		}
		h.tempDirs[dir] = time.Now()
		return ok1(dir + "\n")
	case argv[0] == "rm" && len(argv) == 4 && argv[1] == "-rf":
		h.mu.Lock()
		for p := range h.uploads {
			if strings.HasPrefix(p, argv[3]+"/") {
				h.removed[p] = true
			}
		}
		delete(h.tempDirs, argv[3])
		h.mu.Unlock()
		return ok1("")
	case argv[0] == "rm" && len(argv) == 4 && argv[1] == "-f" && argv[2] == "--":
		if h.FailRemoveFile != "" {
			return h.exit(cmd, 1, h.FailRemoveFile)
		}
		h.mu.Lock()
		h.removed[argv[3]] = true
		h.mu.Unlock()
		return ok1("")
	case argv[0] == "docker":
		if h.NoDocker {
			return h.exit(cmd, 127, "sh: docker: not found")
		}
		return h.docker(ctx, cmd, argv[1:])
	}
	return h.exit(cmd, 127, "fakehost: unexpected command: "+cmd.Line)
}

func ok1(out string) (transport.Result, error) {
	return transport.Result{Stdout: []byte(out)}, nil
}

func (h *Host) exit(cmd transport.Command, code int, stderr string) (transport.Result, error) {
	return transport.Result{Stderr: []byte(stderr + "\n"), ExitCode: code},
		&transport.ExitError{Host: h.Name, Cmd: cmd.Line, Code: code, StderrTail: stderr}
}

// lock holds the cluster lock until the command's context ends, or
// DropLock ends it as a dropped connection would; it answers every
// heartbeat, as the real holder does.
func (h *Host) lock(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	argv, _ := shell.Split(cmd.Line)
	// sh -c SCRIPT cvs-lock CONTAINER OWNER NONCE DIR SILENCE
	if len(argv) != 9 {
		return h.exit(cmd, 2, "fakehost: the lock command's arguments changed: "+cmd.Line)
	}
	line := "cvs-lock-acquired " + argv[6] + "\n"
	if cmd.Stdout != nil {
		io.WriteString(cmd.Stdout, line)
	}
	h.mu.Lock()
	if h.lockDrop == nil {
		h.lockDrop = make(chan struct{})
	}
	drop := h.lockDrop
	h.mu.Unlock()
	var beats <-chan time.Time
	if cmd.Heartbeat > 0 && cmd.Stdout != nil {
		t := time.NewTicker(cmd.Heartbeat)
		defer t.Stop()
		beats = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return transport.Result{Stdout: []byte(line)}, nil
		case <-drop:
			return transport.Result{ExitCode: -1}, &transport.HostError{Host: h.Name, Kind: transport.KindSSH, Detail: "connection lost"}
		case <-beats:
			io.WriteString(cmd.Stdout, "cvs-lock-beat\n")
		}
	}
}

// DropLock ends the command holding the cluster lock on the host, as a
// dropped SSH session does.
func (h *Host) DropLock() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lockDrop != nil {
		close(h.lockDrop)
	}
}

func (h *Host) version() string {
	if h.DockerVersion == "" {
		return "20.10.24"
	}
	return h.DockerVersion
}

const mark = "@@cvs-probe@@ "

var sweepRE = regexp.MustCompile(`sec temp-removed 0; .*find "\$d" -mmin -([0-9]+) `)

// probe answers docker.ProbeScript from the state: the container named in
// the script's inspect, the image of its image inspect.
func (h *Host) probe(script string) (transport.Result, error) {
	if h.NoDocker {
		return ok1("\n" + mark + "docker-missing 0\n")
	}
	name, ref := "", ""
	for _, l := range strings.Split(script, "\n") {
		if i := strings.Index(l, "container inspect "); i >= 0 && strings.HasPrefix(l, "cinspect=") {
			if w, ok := shell.Split(strings.TrimSuffix(l[i+len("container inspect "):], " 2>&1); rc=$?")); ok && len(w) == 1 {
				name = w[0]
			}
		}
		if i := strings.Index(l, "image inspect --format '{{.Id}}' "); i >= 0 {
			if w, ok := shell.Split(strings.TrimSuffix(l[i+len("image inspect --format '{{.Id}}' "):], " 2>&1); rc=$?")); ok && len(w) == 1 {
				ref = w[0]
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	sec := func(n string, rc int, body string) { fmt.Fprintf(&b, "\n%s%s %d\n%s\n", mark, n, rc, body) }
	mid := h.MachineID
	if mid == "" {
		mid = fmt.Sprintf("%032x", h.seed())
	}
	disk := h.DiskFreeKiB
	if disk == 0 {
		disk = 100 << 20
	}
	arch := h.Arch
	if arch == "" {
		arch = "x86_64"
	}
	sec("host", 0, fmt.Sprintf("machine-id %s\ntime %d\ndisk %d\narch %s", mid, time.Now().Add(h.ClockOffset).Unix(), disk, arch))
	sec("host-tcp", 0, tcpTable(h.PortBusy))
	if m := sweepRE.FindStringSubmatch(script); m != nil {
		// transport.SweepTempScript: the folders untouched for its -mmin.
		mins, _ := strconv.Atoi(m[1])
		var gone []string
		for d, changed := range h.tempDirs {
			if time.Since(changed) >= time.Duration(mins)*time.Minute {
				gone = append(gone, d)
				delete(h.tempDirs, d)
			}
		}
		sort.Strings(gone)
		sec("temp-removed", 0, strings.Join(gone, "\n"))
	}
	sec("version", 0, h.version())
	c := h.byName(name)
	if c == nil {
		sec("container", 1, "Error: No such container: "+name)
	} else {
		sec("container", 0, inspectJSON(c))
	}
	if ref != "" {
		if id, ok := h.Images[ref]; ok {
			sec("image", 0, id)
		} else {
			sec("image", 1, "Error: No such image: "+ref)
		}
	}
	if c != nil && c.State == "running" {
		sec("sshd-2224", 0, tcpTable(c.SSHD))
		if c.SSHD {
			sec("sshd-own", 1, c.SSHDFiles)
		} else {
			sec("sshd-own", 0, "")
		}
		if _, labelled := c.Labels["cvs.setup-hash"]; labelled {
			if c.Record == "" {
				sec("provisioned", 1, "cat: /etc/cvs/provisioned: No such file or directory")
			} else {
				sec("provisioned", 0, c.Record)
			}
		}
	}
	sec("end", 0, "")
	return ok1(b.String())
}

func inspectJSON(c *Container) string {
	type state struct {
		Status    string
		Running   bool
		Pid       int
		StartedAt string
	}
	pid := 0
	if c.State == "running" {
		pid = 4242
	}
	doc := []map[string]any{{
		"Id": c.ID, "Name": "/" + c.Name, "Image": c.Image,
		"State":  state{Status: c.State, Running: c.State == "running", Pid: pid, StartedAt: c.StartedAt},
		"Config": map[string]any{"Image": c.Ref, "Labels": c.Labels, "User": c.User},
	}}
	b, _ := json.MarshalIndent(doc, "", "    ")
	return string(b)
}

// tcpTable is /proc/net/tcp with sshd's port 2224 listening or not.
func tcpTable(listening bool) string {
	s := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	if listening {
		s += "   0: 00000000:08B0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
	}
	return s
}

func (h *Host) docker(ctx context.Context, cmd transport.Command, argv []string) (transport.Result, error) {
	h.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			h.mu.Unlock()
			locked = false
		}
	}
	defer unlock()
	switch argv[0] {
	case "version":
		return ok1(h.version() + "\n")
	case "run":
		if h.FailRun != "" {
			return h.exit(cmd, 125, h.FailRun)
		}
		c := &Container{State: "running", Labels: map[string]string{}, Files: map[string][]byte{}, Meta: map[string]File{},
			StartedAt: time.Now().UTC().Format(time.RFC3339Nano)}
		for i := 1; i < len(argv); i++ {
			switch argv[i] {
			case "-d", "--init", "--privileged":
			case "--name":
				c.Name = argv[i+1]
				i++
			case "--label":
				k, v, _ := strings.Cut(argv[i+1], "=")
				c.Labels[k] = v
				i++
			default:
				if strings.HasPrefix(argv[i], "--") {
					i++ // a flag with a value
					continue
				}
				c.Ref = argv[i]
				i = len(argv)
			}
		}
		if h.byName(c.Name) != nil {
			return h.exit(cmd, 125, fmt.Sprintf("docker: Error response from daemon: Conflict. The container name \"/%s\" is already in use.", c.Name))
		}
		id, ok := h.Images[c.Ref]
		for _, have := range h.Images {
			if have == c.Ref {
				id, ok = have, true // docker run IMAGE-ID
			}
		}
		if !ok && h.PullAs != "" {
			id, ok = h.PullAs, true
			h.Images[c.Ref] = id
		}
		if !ok {
			return h.exit(cmd, 125, "docker: Error response from daemon: manifest for "+c.Ref+" not found")
		}
		c.Image = id
		c.User = h.ImageUser
		h.next++
		c.ID = fmt.Sprintf("%064x", h.seed()+h.next)
		h.containers[c.ID] = c
		if h.FailRunAfterCreate != "" {
			c.State = "created"
			return h.exit(cmd, 125, h.FailRunAfterCreate)
		}
		return ok1(c.ID + "\n")
	case "start":
		c := h.byRef(argv[1])
		if c == nil {
			return h.exit(cmd, 1, "Error response from daemon: No such container: "+argv[1])
		}
		c.State = "running"
		return ok1(argv[1] + "\n")
	case "rm":
		if h.FailRm != "" {
			return h.exit(cmd, 1, h.FailRm)
		}
		for _, ref := range argv[2:] {
			if c := h.byRef(ref); c != nil {
				delete(h.containers, c.ID)
			}
		}
		return ok1("")
	case "ps":
		want := ""
		for i, a := range argv {
			if a == "--filter" {
				want = strings.TrimPrefix(argv[i+1], "label=")
			}
		}
		k, v, _ := strings.Cut(want, "=")
		var ids []string
		for id, c := range h.containers {
			if c.Labels[k] == v {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		return ok1(strings.Join(ids, "\n"))
	case "container":
		if argv[1] == "inspect" && len(argv) == 3 {
			// docker's JSON; an all-hex name may match another's ID.
			c := h.byRef(argv[2])
			if c == nil {
				return h.exit(cmd, 1, "Error: No such container: "+argv[2])
			}
			return ok1(inspectJSON(c) + "\n")
		}
		if argv[1] != "inspect" || len(argv) != 5 {
			break
		}
		c := h.byRef(argv[4])
		if c == nil {
			return h.exit(cmd, 1, "Error: No such container: "+argv[4])
		}
		out := strings.NewReplacer("{{.Name}}", "/"+c.Name, "{{.Image}}", c.Image, "{{.State.Status}}", c.State,
			"{{.Config.User}}", c.User, "{{.Id}}", c.ID, "{{.State.StartedAt}}", c.StartedAt).Replace(argv[3])
		return ok1(out + "\n")
	case "cp":
		if h.FailCopy != "" {
			return h.exit(cmd, 1, h.FailCopy)
		}
		name, dst, _ := strings.Cut(argv[2], ":")
		c := h.byName(name)
		if c == nil {
			return h.exit(cmd, 1, "Error: No such container: "+name)
		}
		up := h.uploads[argv[1]]
		if _, ok := c.Meta[path.Dir(dst)]; !ok && path.Dir(dst) != "/tmp" {
			return h.exit(cmd, 1, "Error response from daemon: Could not find the file "+path.Dir(dst)+" in container "+name)
		}
		c.Files[dst] = up.Data
		c.Meta[dst] = File{Owner: "0", Mode: up.Mode}
		return ok1("")
	case "exec":
		return h.exec(ctx, cmd, argv[1:], unlock)
	case "image":
		return h.image(cmd, argv[1:])
	case "tag":
		id, ok := h.Images[argv[1]]
		if !ok && strings.HasPrefix(argv[1], "sha256:") {
			id, ok = argv[1], true
		}
		if !ok {
			return h.exit(cmd, 1, "Error response from daemon: No such image: "+argv[1])
		}
		h.Images[argv[2]] = id
		return ok1("")
	case "load":
		return h.load(cmd, argv[len(argv)-1])
	}
	return h.exit(cmd, 125, "fakehost: unexpected docker command: "+strings.Join(argv, " "))
}

// exec answers the docker execs cvs runs: provisioning, sshd's check and
// install, steps, and cleanup.
func (h *Host) exec(ctx context.Context, cmd transport.Command, argv []string, unlock func()) (transport.Result, error) {
	for len(argv) > 0 && strings.HasPrefix(argv[0], "-") {
		if argv[0] == "-u" {
			argv = argv[1:]
		}
		argv = argv[1:]
	}
	c := h.byName(argv[0])
	if c == nil || c.State != "running" {
		return h.exit(cmd, 1, "Error response from daemon: container "+argv[0]+" is not running")
	}
	inner := argv[1:]
	// A watched command (docker exec -i ... sh -c Watchdog cvs LINE) that
	// is the setup script: answer LINE itself.
	if len(inner) == 5 && inner[0] == "sh" && inner[1] == "-c" && inner[3] == "cvs" {
		if words, ok := shell.Split(inner[4]); ok && len(words) >= 4 && words[0] == "sh" && words[3] == "cvs-setup" {
			inner = words
		}
	}
	switch {
	case len(inner) >= 4 && inner[0] == "sh" && inner[1] == "-c" && inner[3] == "cvs-setup":
		if h.FailProvision != "" {
			return h.exit(cmd, 1, h.FailProvision)
		}
		c.Provisioned++
		if len(inner) >= 8 {
			c.Record = fmt.Sprintf("sha256=%s\ncvs=%s\ntime=%s\n", inner[6], inner[7], time.Now().UTC().Format(time.RFC3339))
		}
		return ok1("provisioned\n")
	case len(inner) == 3 && inner[0] == "sh" && inner[1] == "-c" && strings.Contains(inner[2], "/proc/net/tcp"):
		out := tcpTable(c.SSHD)
		if c.SSHD {
			out += "@@cvs-sshd-running@@\n"
		}
		return ok1(out + "@@cvs-sshd-files@@\n" + c.SSHDFiles)
	case len(inner) == 4 && inner[0] == "sh" && inner[1] == "-s" && inner[2] == "<":
		if h.FailSSHD != "" {
			return h.exit(cmd, 5, h.FailSSHD)
		}
		c.SSHD = true
		c.SSHDFiles = heredocs(string(h.uploads[inner[3]].Data), "authorized_keys", "known_hosts", "sshd_config")
		return ok1("")
	case len(inner) >= 2 && inner[0] == "cat":
		return ok1("")
	case len(inner) >= 2 && inner[0] == "rm":
		for _, p := range inner[2:] {
			for f := range c.Meta {
				if f == p || strings.HasPrefix(f, p+"/") {
					delete(c.Files, f)
					delete(c.Meta, f)
				}
			}
			delete(c.Files, p)
		}
		return ok1("")
	case len(inner) == 4 && inner[0] == "mkdir" && inner[1] == "-m":
		if _, ok := c.Meta[inner[3]]; ok {
			return h.exit(cmd, 1, "mkdir: cannot create directory '"+inner[3]+"': File exists")
		}
		mode, _ := strconv.ParseUint(inner[2], 8, 32)
		c.Meta[inner[3]] = File{Owner: "0", Mode: os.FileMode(mode), Dir: true}
		return ok1("")
	case len(inner) >= 5 && inner[0] == "sh" && inner[1] == "-c" && strings.Contains(inner[2], "chown") && strings.Contains(inner[2], "chmod 600"):
		// chown "$0" "$@" && chmod 600 "$@"
		for _, p := range inner[4:] {
			m, ok := c.Meta[p]
			if !ok {
				return h.exit(cmd, 1, "chown: cannot access '"+p+"': No such file or directory")
			}
			m.Owner, m.Mode = inner[3], 0o600
			c.Meta[p] = m
		}
		return ok1("")
	case len(inner) == 5 && inner[0] == "sh" && inner[1] == "-c" && inner[3] == "cvs":
		// A watched command: a step (bash -eo pipefail SCRIPT) or exec.
		words, _ := shell.Split(inner[4])
		script, cleanup := "", ""
		switch {
		case len(words) > 1 && words[0] == "bash":
			script = string(c.Files[words[len(words)-1]])
		case len(words) == 6 && words[0] == "sh" && words[3] == "cvs-step":
			// The last step as root: the step, then rm -rf of the
			// scripts' folder ("$2").
			script, cleanup = string(c.Files[words[4]]), words[5]
		}
		step := h.Step
		unlock()
		out, code := "", 0
		if step != nil {
			out, code = step(script)
		}
		if cleanup != "" && ctx.Err() == nil {
			h.mu.Lock()
			for f := range c.Meta {
				if f == cleanup || strings.HasPrefix(f, cleanup+"/") {
					delete(c.Files, f)
					delete(c.Meta, f)
				}
			}
			h.mu.Unlock()
		}
		if cmd.Stdout != nil {
			io.WriteString(cmd.Stdout, out)
		}
		res := transport.Result{Stdout: []byte(out), ExitCode: code, Duration: time.Millisecond}
		if code != 0 {
			return res, &transport.ExitError{Host: h.Name, Cmd: cmd.Name, Code: code}
		}
		return res, ctx.Err()
	}
	return h.exit(cmd, 126, "fakehost: unexpected docker exec: "+strings.Join(argv, " "))
}

// heredocs returns the contents of the named files as the sshd install
// script writes them (cat >"$dir/NAME" <<'END' ... END), concatenated in
// the order given.
func heredocs(script string, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		head := `cat >"$dir/` + n + `" <<'`
		i := strings.Index(script, head)
		if i < 0 {
			continue
		}
		rest := script[i+len(head):]
		end, body, ok := strings.Cut(rest, "'\n")
		if !ok {
			continue
		}
		if j := strings.Index(body, "\n"+end+"\n"); j >= 0 {
			b.WriteString(body[:j+1])
		}
	}
	return b.String()
}

// image answers image ls and image inspect.
func (h *Host) image(cmd transport.Command, argv []string) (transport.Result, error) {
	switch {
	case argv[0] == "ls":
		seen := map[string]bool{}
		var ids []string
		for _, id := range h.Images {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		for id := range h.Layers {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		return ok1(strings.Join(ids, "\n") + "\n")
	case argv[0] == "inspect" && len(argv) >= 4 && argv[2] == "{{json .RootFS.Layers}}":
		var b strings.Builder
		for _, id := range argv[3:] {
			data, _ := json.Marshal(h.Layers[id])
			b.Write(append(data, '\n'))
		}
		return ok1(b.String())
	case argv[0] == "inspect" && len(argv) == 4 && argv[2] == "{{.Id}}":
		if id, ok := h.Images[argv[3]]; ok {
			return ok1(id + "\n")
		}
		return h.exit(cmd, 1, "Error: No such image: "+argv[3])
	}
	return h.exit(cmd, 125, "fakehost: unexpected docker image command: "+strings.Join(argv, " "))
}

// load reads a docker-save tarball uploaded earlier, as docker load does:
// every layer must be in the tarball or already in the host's layer store
// (by chain ID).
func (h *Host) load(cmd transport.Command, file string) (transport.Result, error) {
	up, ok := h.uploads[file]
	if !ok {
		return h.exit(cmd, 1, "open "+file+": no such file or directory")
	}
	tmp, err := os.CreateTemp("", "fakehost-load-*.tar")
	if err != nil {
		return h.exit(cmd, 1, err.Error())
	}
	defer os.Remove(tmp.Name())
	tmp.Write(up.Data)
	tmp.Close()
	saved, err := images.ReadSaved(tmp.Name())
	if err != nil {
		return h.exit(cmd, 1, err.Error())
	}
	have := map[string]bool{}
	for _, diffs := range h.Layers {
		for _, c := range images.ChainIDs(diffs) {
			have[c] = true
		}
	}
	present := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(up.Data))
	for {
		hd, err := tr.Next()
		if err != nil {
			break
		}
		present[path.Clean(hd.Name)] = true
	}
	for i, c := range images.ChainIDs(saved.DiffIDs) {
		if !present[saved.LayerFiles[i]] && (!have[c] || h.NoPartialLoad) {
			return h.exit(cmd, 1, "open "+saved.LayerFiles[i]+": no such file or directory")
		}
	}
	if h.Layers == nil {
		h.Layers = map[string][]string{}
	}
	h.Layers[saved.ImageID] = saved.DiffIDs
	for _, t := range saved.RepoTags {
		h.Images[t] = saved.ImageID
	}
	return ok1("Loaded image: " + strings.Join(saved.RepoTags, ", ") + "\n")
}
