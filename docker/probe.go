// Package docker is cvs's view of the container runtime on a host: the
// one-round-trip probe of a host's Docker and container state, and the
// docker commands cvs runs (built from argv, optionally through sudo -n).
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/report"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// State is a container's state on one host.
type State string

const (
	StateRunning State = "running"
	StateExited  State = "exited"
	StateCreated State = "created"
	// Docker's other states (paused, restarting, removing, dead) are
	// reported as Docker names them.
	StateAbsent State = "absent"
	// StateUnknown: the host could not be probed, or Docker did not say.
	// Never read as absent.
	StateUnknown State = "unknown"
)

// Kinds of probe failures, in Facts.ErrorKind and `--json`'s error_kind,
// beside transport's connection kinds. The README documents them.
const (
	// KindDockerMissing: no docker command on the host's PATH.
	KindDockerMissing transport.Kind = "docker-missing"
	// KindSudoDenied: sudo = true but `sudo -n docker` asks for a password.
	KindSudoDenied transport.Kind = "sudo-denied"
	// KindDockerUnavailable: the docker CLI is there, its daemon does not
	// answer.
	KindDockerUnavailable transport.Kind = "docker-unavailable"
	// KindProbeIncomplete: the probe's output was cut short.
	KindProbeIncomplete transport.Kind = "probe-incomplete"
	// KindProbeContainer: the container could not be inspected.
	KindProbeContainer transport.Kind = "probe-container"
	// KindProbeImage: the configured image could not be inspected.
	KindProbeImage transport.Kind = "probe-image"
)

// SSHD says whether sshd listens on sshd_port inside the container.
type SSHD string

const (
	SSHDListening    SSHD = "listening"
	SSHDNotListening SSHD = "not-listening"
	SSHDNotApplied   SSHD = "n/a" // the container is not running
	SSHDUnknown      SSHD = "unknown"
)

// Facts are what one probe learned about one host. The JSON form is part of
// `cvs status --json` and is documented in the README; fields are only
// ever added.
type Facts struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	// Error says why the host, Docker or the container could not be probed.
	Error string `json:"error,omitempty"`
	// ErrorKind classifies Error: one of transport's kinds (unreachable,
	// auth-failed, ...) or of the probe's below.
	ErrorKind transport.Kind `json:"error_kind,omitempty"`

	DockerPresent bool   `json:"docker_present"`
	DockerVersion string `json:"docker_version,omitempty"`
	// DockerAccess is how cvs talks to the daemon there: "api" (the Engine
	// API through the SSH connection) or "cli" (the docker command);
	// DockerAccessNote says why the API is not used where it was not.
	DockerAccess     string `json:"docker_access,omitempty"`
	DockerAccessNote string `json:"docker_access_note,omitempty"`

	// Host is what the probe learned of the host itself.
	HostFacts HostFacts `json:"host_facts"`

	Container ContainerFacts `json:"container"`
	// ImageID is the local ID of the configured image on the host; empty
	// when the host does not have it.
	ImageID string `json:"configured_image_id"`
}

// HostFacts are the host-level facts of a probe, for the preflight
// checks.
type HostFacts struct {
	// MachineID is /etc/machine-id ("" when unreadable): hosts cloned from
	// one image share it, which breaks MPI and sshd host keys.
	MachineID string `json:"machine_id,omitempty"`
	// ClockSkew is the host's clock minus this machine's, in seconds,
	// measured to within half the probe's round trip.
	ClockSkew float64 `json:"clock_skew_s"`
	// PortListening: something on the host's network listens on sshd_port.
	PortListening bool `json:"sshd_port_in_use"`
	// DiskFreeKiB is the free space under /var/lib/docker (-1: unknown).
	DiskFreeKiB int64 `json:"docker_disk_free_kib"`
	// Arch is the host's architecture by its OCI name (amd64, arm64,
	// ppc64le; from uname -m), "" when unknown: which platform of a
	// multi-platform image it runs.
	Arch string `json:"arch,omitempty"`
	// DockerHost is DOCKER_HOST in the SSH session's environment on the
	// host ("" when unset): a rootless daemon's socket, say.
	DockerHost string `json:"docker_host,omitempty"`
	// TempRemoved are the temporary folders an earlier cvs left that the
	// probe removed (ProbeSpec.SweepTemp).
	TempRemoved []string `json:"-"`
}

// ContainerFacts describe the configured container on a host.
type ContainerFacts struct {
	Name      string            `json:"name"`
	State     State             `json:"state"`
	ID        string            `json:"id,omitempty"`
	ImageID   string            `json:"image_id,omitempty"`
	Image     string            `json:"image,omitempty"`
	StartedAt string            `json:"started_at,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// User is the image's USER the container runs as ("" is root).
	User string `json:"user,omitempty"`
	// Provisioning is the container's provisioning record, read when cvs
	// launched it with a setup script (label cvs.setup-hash).
	Provisioning *Provisioning `json:"provisioning,omitempty"`
	SSHD         SSHD          `json:"sshd"`
	// SSHDOwn: the sshd listening is the one cvs started (its pid file
	// names a live sshd); SSHDFiles is what cvs gave it (the authorized
	// key, known_hosts, sshd_config), read by the probe when asked.
	SSHDOwn   bool   `json:"-"`
	SSHDFiles string `json:"-"`
}

// Provisioning is what a container's provisioning record says.
type Provisioning struct {
	// Recorded is false when the container has no record: a cold start
	// that never finished provisioning.
	Recorded bool   `json:"recorded"`
	Hash     string `json:"sha256,omitempty"`
	Version  string `json:"cvs,omitempty"`
	Time     string `json:"time,omitempty"`
}

// LabelSetupHash is the label cvs puts on a container it launches with a
// setup script: that script's hash (or "none").
const LabelSetupHash = "cvs.setup-hash"

// ProvisionRecord is where a container keeps its provisioning record
// (package provision writes it).
const ProvisionRecord = "/etc/cvs/provisioned"

// ProbeSpec says what to probe.
type ProbeSpec struct {
	Container string // container name
	Image     string // configured image reference
	SSHDPort  int
	Sudo      bool
	// SSHDPidFile and SSHDDir, when set, are where cvs's own sshd keeps
	// its pid and its key and configuration files in the container: the
	// probe reads whether that sshd runs and what it was given, so that an
	// attach needs no docker exec to check it.
	SSHDPidFile, SSHDDir string
	// SweepTemp: also remove the temporary folders an earlier cvs left on
	// the host (transport.SweepTempScript), in the same round trip. Only a
	// run that may change the host asks: status changes nothing.
	SweepTemp bool
}

// Section markers of the probe's output. They start with a NUL-free
// sentinel no docker output begins with.
const mark = "@@cvs-probe@@ "

// ProbeScript returns the remote script that gathers every fact in one
// round trip, asking Docker through its CLI.
func ProbeScript(s ProbeSpec) string {
	d := CLI{Sudo: s.Sudo}
	var b strings.Builder
	w := func(line string) { b.WriteString(line + "\n") }
	b.WriteString(hostScript(s))
	w(`if ! command -v docker >/dev/null 2>&1; then sec docker-missing 0; exit 0; fi`)
	w(`out=$(` + Line(d.Version()) + ` 2>&1); rc=$?`)
	w(`sec version $rc; printf '%s\n' "$out"`)
	w(`[ $rc -eq 0 ] || exit 0`)
	w(`cinspect=$(` + Line(d.InspectContainer(s.Container, "")) + ` 2>&1); rc=$?`)
	w(`sec container $rc; printf '%s\n' "$cinspect"`)
	if s.Image != "" {
		w(`out=$(` + Line(d.InspectImage(s.Image, "{{.Id}}")) + ` 2>&1); rc=$?`)
		w(`sec image $rc; printf '%s\n' "$out"`)
	}
	// The container's main process (State.Pid) and whether cvs launched
	// it with a setup script, from the inspect output above.
	w(`pid=$(printf '%s\n' "$cinspect" | sed -n 's/^ *"Pid": *\([1-9][0-9]*\),.*/\1/p' | head -n 1)`)
	w(`labelled=; case $cinspect in *'"` + LabelSetupHash + `"'*) labelled=1 ;; esac`)
	b.WriteString(containerScript(s))
	return b.String()
}

// hostScript is the probe's part about the host itself: identity, clock,
// the sockets of its network, disk. It defines sec, which prints a section
// marker.
func hostScript(s ProbeSpec) string {
	var b strings.Builder
	w := func(line string) { b.WriteString(line + "\n") }
	w(`sec() { printf '\n` + mark + `%s %s\n' "$1" "$2"; }`)
	w(`sec host 0; printf 'machine-id %s\ntime %s\n' "$(cat /etc/machine-id 2>/dev/null)" "$(date +%s)"`)
	w(`printf 'disk %s\n' "$(df -Pk /var/lib/docker 2>/dev/null | awk 'NR==2 {print $4}')"`)
	w(`printf 'docker-host %s\n' "${DOCKER_HOST:-}"`)
	w(`printf 'arch %s\n' "$(uname -m 2>/dev/null)"`)
	w(`sec host-tcp 0; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null`)
	if s.SweepTemp {
		w(`sec temp-removed 0; ` + transport.SweepTempScript())
	}
	return b.String()
}

// containerScript is the probe's part about the running container, given
// its main process in $pid and $labelled set when cvs launched it with a
// setup script: sshd's socket and the provisioning record, read from the
// container's namespaces through /proc/$pid (no docker exec, which costs
// far more than a cat). Where /proc is hidden (hidepid), docker exec reads
// them from inside instead. It ends the output.
func containerScript(s ProbeSpec) string {
	d := CLI{Sudo: s.Sudo}
	port := strconv.Itoa(s.SSHDPort)
	var b strings.Builder
	w := func(line string) { b.WriteString(line + "\n") }
	w(`if [ -n "$pid" ]; then`)
	w(`  if [ -r /proc/$pid/net/tcp ]; then out=$(cat /proc/$pid/net/tcp /proc/$pid/net/tcp6 2>/dev/null); rc=0`)
	w(`  else out=$(` + Line(d.Exec(s.Container, Root, "sh", "-c", "cat /proc/net/tcp && cat /proc/net/tcp6 2>/dev/null; true")) + ` 2>&1); rc=$?; fi`)
	w(`  sec sshd-` + port + ` $rc; printf '%s\n' "$out"`)
	if s.SSHDPidFile != "" && s.SSHDDir != "" {
		// Through the container's root and its own /proc: cvs's sshd is
		// "ours" when its pid file names a live sshd there.
		w(`  r=/proc/$pid/root`)
		w(`  if [ -r /proc/$pid/net/tcp ]; then own=0; p=$(cat "$r"` + shell.Quote(s.SSHDPidFile) + ` 2>/dev/null) && [ "$(cat "$r/proc/$p/comm" 2>/dev/null)" = sshd ] && own=1`)
		w(`    sec sshd-own $own; (cd "$r"` + shell.Quote(s.SSHDDir) + ` 2>/dev/null && cat authorized_keys known_hosts sshd_config 2>/dev/null); fi`)
	}
	w(`  if [ -n "$labelled" ]; then`)
	w(`    if [ -r /proc/$pid/root` + ProvisionRecord + ` ] || [ -r /proc/$pid/net/tcp ]; then out=$(cat /proc/$pid/root` + ProvisionRecord + ` 2>&1); rc=$?`)
	w(`    else out=$(` + Line(d.Exec(s.Container, Root, "cat", ProvisionRecord)) + ` 2>&1); rc=$?; fi`)
	w(`    sec provisioned $rc; printf '%s\n' "$out"`)
	w(`  fi`)
	w(`fi`)
	w(`sec end 0`)
	return b.String()
}

// Answers are the daemon's answers to the probe's Docker questions, got
// through its API instead of the docker CLI.
type Answers struct {
	Version string
	// Container is docker's inspect JSON of the container, nil when there
	// is none; ContainerErr says why it could not be inspected.
	Container    json.RawMessage
	ContainerErr error
	// ImageID is the configured image's local ID, "" when the host lacks
	// it; ImageErr says why it could not be inspected.
	ImageID  string
	ImageErr error
}

// ProbeAnswered probes one host whose Docker answered through the API:
// only the host's own part and the container's sockets and record go over
// SSH, one round trip with no docker process. The facts are read by the
// same parser as the CLI probe's.
func ProbeAnswered(ctx context.Context, r transport.Runner, host string, s ProbeSpec, a Answers) Facts {
	var pre strings.Builder
	pre.WriteString(renderSection("version", 0, a.Version))
	labelled := ""
	pid := 0
	switch {
	case a.ContainerErr != nil:
		pre.WriteString(renderSection("container", 1, a.ContainerErr.Error()))
	case a.Container == nil:
		pre.WriteString(renderSection("container", 1, "Error: No such container: "+s.Container))
	default:
		pre.WriteString(renderSection("container", 0, "["+string(a.Container)+"]"))
		var c struct {
			State struct {
				Pid int `json:"Pid"`
			} `json:"State"`
			Config struct {
				Labels map[string]string `json:"Labels"`
			} `json:"Config"`
		}
		if json.Unmarshal(a.Container, &c) == nil {
			pid = c.State.Pid
			if _, ok := c.Config.Labels[LabelSetupHash]; ok {
				labelled = "1"
			}
		}
	}
	if s.Image != "" {
		switch {
		case a.ImageErr != nil:
			pre.WriteString(renderSection("image", 1, a.ImageErr.Error()))
		case a.ImageID == "":
			pre.WriteString(renderSection("image", 1, "Error: No such image: "+s.Image))
		default:
			pre.WriteString(renderSection("image", 0, a.ImageID))
		}
	}
	script := hostScript(s) + "pid=" + map[bool]string{true: strconv.Itoa(pid), false: ""}[pid > 0] + "; labelled=" + labelled + "\n" + containerScript(s)
	return probe(ctx, r, host, s, script, pre.String())
}

// renderSection renders one section of the probe's output.
func renderSection(name string, rc int, body string) string {
	return fmt.Sprintf("\n%s%s %d\n%s\n", mark, name, rc, body)
}

// Probe runs the probe script on one host and parses its answer. A host
// that cannot be probed is reported with State unknown and Error set,
// never as absent.
func Probe(ctx context.Context, r transport.Runner, host string, s ProbeSpec) Facts {
	return probe(ctx, r, host, s, ProbeScript(s), "")
}

// probe runs script and parses its output after the sections in pre.
func probe(ctx context.Context, r transport.Runner, host string, s ProbeSpec, script, pre string) Facts {
	start := time.Now()
	res, err := r.Run(ctx, transport.Command{Line: script, Name: "the probe (docker version, container and image inspect)", Rerun: true})
	end := time.Now()
	if err != nil {
		var ee *transport.ExitError
		if !errors.As(err, &ee) {
			return Unknown(host, s, err)
		}
	}
	f := ParseProbe(host, s, pre+string(res.Stdout))
	if hostTime, ok := parseHostTime(string(res.Stdout)); ok {
		mid := start.Add(end.Sub(start) / 2)
		// date +%s drops the fraction: the host's clock was somewhere in
		// the second it printed.
		f.HostFacts.ClockSkew = float64(hostTime) + 0.5 - float64(mid.UnixNano())/1e9
	}
	return f
}

// parseHostTime finds the host's clock (seconds) in a probe's output.
func parseHostTime(out string) (int64, bool) {
	sec, ok := splitSections(out)["host"]
	if !ok {
		return 0, false
	}
	for _, line := range strings.Split(sec.body, "\n") {
		if v, ok := strings.CutPrefix(line, "time "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Unknown returns the facts of a host that could not be probed.
func Unknown(host string, s ProbeSpec, err error) Facts {
	f := Facts{Host: host, Container: ContainerFacts{Name: s.Container, State: StateUnknown, SSHD: SSHDUnknown}}
	f.Error = err.Error()
	f.ErrorKind = transport.ErrorKind(err)
	f.Reachable = !transport.IsConnectError(err)
	return f
}

// ParseProbe turns the probe script's output into Facts.
func ParseProbe(host string, s ProbeSpec, out string) Facts {
	f := Facts{Host: host, Reachable: true, Container: ContainerFacts{Name: s.Container, State: StateUnknown, SSHD: SSHDUnknown}}
	sections := splitSections(out)
	f.HostFacts.DiskFreeKiB = -1
	if h, ok := sections["host"]; ok {
		for _, line := range strings.Split(h.body, "\n") {
			k, v, _ := strings.Cut(line, " ")
			switch k {
			case "machine-id":
				f.HostFacts.MachineID = strings.TrimSpace(v)
			case "docker-host":
				f.HostFacts.DockerHost = strings.TrimSpace(v)
			case "arch":
				f.HostFacts.Arch = OCIArch(v)
			case "disk":
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					f.HostFacts.DiskFreeKiB = n
				}
			}
		}
	}
	if t, ok := sections["host-tcp"]; ok {
		f.HostFacts.PortListening = Listening(t.body, s.SSHDPort)
	}
	if t, ok := sections["temp-removed"]; ok {
		for _, l := range strings.Split(t.body, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				f.HostFacts.TempRemoved = append(f.HostFacts.TempRemoved, l)
			}
		}
	}
	if _, ok := sections[string(KindDockerMissing)]; ok {
		f.Error, f.ErrorKind = "docker is not installed (no docker command on the host's PATH)", KindDockerMissing
		return f
	}
	// sudo -n docker answers this when it would prompt (a rule that allows
	// only docker without a password is enough; sudo -n true may not be).
	if v, ok := sections["version"]; ok && v.rc != 0 && strings.Contains(v.body, "a password is required") {
		f.Error, f.ErrorKind = "sudo = true but `sudo -n docker` asks for a password; allow passwordless sudo for docker on this host (e.g. a NOPASSWD rule for the docker command)", KindSudoDenied
		return f
	}
	v, ok := sections["version"]
	if !ok {
		f.Error, f.ErrorKind = "the probe's output was cut short: "+report.LastLine(out), KindProbeIncomplete
		return f
	}
	f.DockerPresent = true
	if v.rc != 0 {
		f.Error, f.ErrorKind = "docker daemon unavailable: "+report.LastLine(v.body), KindDockerUnavailable
		return f
	}
	f.DockerVersion = strings.TrimSpace(v.body)

	if c, ok := sections["container"]; ok {
		parseContainer(&f, c)
	}
	if im, ok := sections["image"]; ok {
		switch {
		case im.rc == 0:
			f.ImageID = strings.TrimSpace(im.body)
		case isNoSuch(im.body):
			f.ImageID = ""
		default:
			f.addError("reading the configured image: "+report.LastLine(im.body), KindProbeImage)
		}
	}
	if pr, ok := sections["provisioned"]; ok {
		f.Container.Provisioning = parseProvisioning(pr)
	}
	if own, ok := sections["sshd-own"]; ok {
		f.Container.SSHDOwn, f.Container.SSHDFiles = own.rc == 1, own.body
	}
	switch f.Container.State {
	case StateRunning:
		if sd, ok := sections["sshd-"+strconv.Itoa(s.SSHDPort)]; ok && sd.rc == 0 {
			f.Container.SSHD = SSHDNotListening
			if Listening(sd.body, s.SSHDPort) {
				f.Container.SSHD = SSHDListening
			}
		}
	case StateUnknown:
	default:
		f.Container.SSHD = SSHDNotApplied
	}
	if _, ok := sections["end"]; !ok {
		f.addError("the probe's output was cut short", KindProbeIncomplete)
	}
	return f
}

// parseProvisioning reads the record section: a missing file is "not
// recorded"; any other failure leaves it unknown (nil).
func parseProvisioning(sec section) *Provisioning {
	if sec.rc != 0 {
		if strings.Contains(sec.body, "No such file") {
			return &Provisioning{}
		}
		return nil
	}
	p := ParseProvisioning(sec.body)
	return &p
}

// ParseProvisioning reads a provisioning record (ProvisionRecord's
// content, as provision writes it); Recorded is false for anything else.
func ParseProvisioning(text string) Provisioning {
	var p Provisioning
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "sha256":
			p.Hash = v
		case "cvs":
			p.Version = v
		case "time":
			p.Time = v
		}
	}
	p.Recorded = p.Hash != ""
	return p
}

// addError adds a problem; the first one found names the kind.
func (f *Facts) addError(msg string, kind transport.Kind) {
	if f.Error != "" {
		f.Error += "; " + msg
		return
	}
	f.Error, f.ErrorKind = msg, kind
}

type section struct {
	rc   int
	body string
}

func splitSections(out string) map[string]section {
	secs := map[string]section{}
	name := ""
	var body strings.Builder
	flush := func() {
		if name != "" {
			s := secs[name]
			s.body = strings.TrimSuffix(body.String(), "\n")
			secs[name] = s
		}
		body.Reset()
	}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, mark); ok {
			flush()
			n, rc, _ := strings.Cut(rest, " ")
			code, _ := strconv.Atoi(strings.TrimSpace(rc))
			name = n
			secs[name] = section{rc: code}
			continue
		}
		body.WriteString(line + "\n")
	}
	flush()
	return secs
}

func parseContainer(f *Facts, c section) {
	if c.rc != 0 {
		if isNoSuch(c.body) {
			f.Container.State = StateAbsent
			f.Container.SSHD = SSHDNotApplied
			return
		}
		f.Error, f.ErrorKind = "inspecting the container: "+report.LastLine(c.body), KindProbeContainer
		return
	}
	var list []inspectDoc
	if err := json.Unmarshal([]byte(c.body), &list); err != nil || len(list) != 1 {
		f.Error, f.ErrorKind = fmt.Sprintf("docker inspect answered something unreadable: %s", report.LastLine(c.body)), KindProbeContainer
		return
	}
	it := list[0]
	if it.Name == "" {
		f.Error, f.ErrorKind = "docker inspect gave no container name", KindProbeContainer
		return
	}
	if it.Name != "/"+f.Container.Name {
		// Docker read an all-hex name as the ID prefix of another
		// container: the one named so does not exist.
		f.Container.State = StateAbsent
		f.Container.SSHD = SSHDNotApplied
		return
	}
	f.Container.ID = it.ID
	f.Container.ImageID = it.Image
	f.Container.Image = it.Config.Image
	f.Container.StartedAt = it.State.StartedAt
	f.Container.Labels = it.Config.Labels
	f.Container.User = it.Config.User
	if it.State.Status == "" {
		f.Error, f.ErrorKind = "docker inspect gave no container state", KindProbeContainer
		return
	}
	f.Container.State = State(it.State.Status)
}

// isNoSuch reports whether docker said the object does not exist, the only
// answer that makes a container absent.
func isNoSuch(s string) bool {
	l := strings.ToLower(s)
	return strings.Contains(l, "no such container") || strings.Contains(l, "no such object") || strings.Contains(l, "no such image")
}

// Listening reports whether /proc/net/tcp{,6} content shows a socket in
// LISTEN state on port.
func Listening(procNetTCP string, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(procNetTCP, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		if strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
			return true
		}
	}
	return false
}

// ProbeTimeout bounds one host's probe round trip.
const ProbeTimeout = 60 * time.Second

// ShortID returns the first 12 hex digits of a container or image ID, as
// docker ps shows them.
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// OCIArch maps a machine name as uname -m (or docker info's Architecture)
// prints it to its OCI architecture; "" stays "".
func OCIArch(uname string) string {
	switch m := strings.TrimSpace(uname); m {
	case "x86_64", "x86-64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8l":
		return "arm64"
	case "ppc64le", "ppc64el":
		return "ppc64le"
	case "i386", "i686":
		return "386"
	default:
		if strings.HasPrefix(m, "armv") {
			return "arm"
		}
		return m
	}
}
