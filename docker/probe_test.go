package docker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

var spec = ProbeSpec{Container: "cvs-lab", Image: "reg:5000/w:1", SSHDPort: 2224}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseProbeRunning(t *testing.T) {
	f := ParseProbe("h1", spec, readTestdata(t, "probe-running.txt"))
	if f.Error != "" || !f.Reachable || f.DockerVersion != "20.10.24+dfsg1" {
		t.Fatalf("facts = %+v", f)
	}
	c := f.Container
	if c.State != StateRunning || c.ID != "3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a" ||
		c.ImageID != "sha256:9c1d5e2a7b3f" || c.StartedAt != "2026-11-23T15:00:01.123456789Z" || c.Labels["cvs.lifetime"] != "persistent" {
		t.Errorf("container = %+v", c)
	}
	if f.ImageID != "sha256:9c1d5e2a7b3f" {
		t.Errorf("configured image id %q", f.ImageID)
	}
	if c.SSHD != SSHDListening {
		t.Errorf("sshd = %s", c.SSHD)
	}
}

func TestParseProbeStates(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		state     State
		kind      string
		sshd      SSHD
	}{
		{"absent", "\n" + mark + "version 0\n20.10\n" + mark + "container 1\nError: No such container: cvs-lab\n" + mark + "image 1\nError: No such image: reg:5000/w:1\n" + mark + "end 0\n", StateAbsent, "", SSHDNotApplied},
		{"docker missing", "\n" + mark + "docker-missing 0\n", StateUnknown, "docker-missing", SSHDUnknown},
		{"daemon down", "\n" + mark + "version 1\nCannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n", StateUnknown, "docker-unavailable", SSHDUnknown},
		{"inspect fails oddly", "\n" + mark + "version 0\n20.10\n" + mark + "container 1\npermission denied while trying to connect\n" + mark + "end 0\n", StateUnknown, "probe-container", SSHDUnknown},
		{"cut short", "\n" + mark + "version 0\n20.10\n", StateUnknown, "probe-incomplete", SSHDUnknown},
		{"sudo denied", "\n" + mark + "version 1\nsudo: a password is required\n", StateUnknown, "sudo-denied", SSHDUnknown},
		{"exited", "\n" + mark + "version 0\n20.10\n" + mark + "container 0\n[{\"Id\":\"abc\",\"Name\":\"/cvs-lab\",\"Image\":\"sha256:1\",\"State\":{\"Status\":\"exited\",\"StartedAt\":\"x\"},\"Config\":{\"Image\":\"i\"}}]\n" + mark + "end 0\n", StateExited, "", SSHDNotApplied},
		// Docker answered an all-hex name with the container whose ID
		// starts with it: the container named so does not exist.
		{"id prefix", "\n" + mark + "version 0\n20.10\n" + mark + "container 0\n[{\"Id\":\"cvs0abc\",\"Name\":\"/other\",\"Image\":\"sha256:1\",\"State\":{\"Status\":\"running\",\"StartedAt\":\"x\"},\"Config\":{\"Image\":\"i\"}}]\n" + mark + "end 0\n", StateAbsent, "", SSHDNotApplied},
	} {
		f := ParseProbe("h", spec, tc.out)
		if f.Container.State != tc.state || string(f.ErrorKind) != tc.kind || f.Container.SSHD != tc.sshd {
			t.Errorf("%s: state %s kind %q sshd %s (error %q)", tc.name, f.Container.State, f.ErrorKind, f.Container.SSHD, f.Error)
		}
	}
}

func TestListening(t *testing.T) {
	procNet := readTestdata(t, "proc-net-tcp.txt")
	if !Listening(procNet, 2224) {
		t.Error("port 2224 (08B0) LISTEN not found")
	}
	if Listening(procNet, 22) {
		t.Error("port 22 is only ESTABLISHED in the sample, not LISTEN")
	}
}

func TestUnknownIsNeverAbsent(t *testing.T) {
	err := &transport.HostError{Host: "h", Kind: transport.KindUnreachable, Err: errors.New("x")}
	f := Unknown("h", spec, err)
	if f.Container.State != StateUnknown || f.Reachable || f.ErrorKind != "unreachable" {
		t.Errorf("facts = %+v", f)
	}
}

// The probe is one script: every name and image in it is quoted, so odd
// characters cannot break out of it.
func TestProbeScriptQuotes(t *testing.T) {
	s := ProbeScript(ProbeSpec{Container: "c", Image: "img;rm -rf /", SSHDPort: 2224, Sudo: true})
	if !strings.Contains(s, shell.Quote("img;rm -rf /")) || !strings.Contains(s, "sudo -n docker") {
		t.Errorf("script:\n%s", s)
	}
}

// FuzzParseProbe: whatever a host answers, the parser never panics, and a
// container is absent only when Docker said it does not exist.
func FuzzParseProbe(f *testing.F) {
	f.Add(readTestdataF(f, "probe-running.txt"))
	f.Add("\n" + mark + "version 0\n20.10\n" + mark + "container 1\nError: No such container: cvs-lab\n" + mark + "end 0\n")
	f.Add("\n" + mark + "docker-missing 0\n")
	f.Add("garbage\n" + mark + "version x\n")
	f.Fuzz(func(t *testing.T, out string) {
		facts := ParseProbe("h", spec, out)
		// Absent only when Docker said "no such", or when the container
		// that answered has another name (an ID prefix matched).
		lower := strings.ToLower(out)
		if facts.Container.State == StateAbsent && !strings.Contains(lower, "no such") && !strings.Contains(lower, `"name"`) {
			t.Fatalf("absent without Docker saying so:\n%q -> %+v", out, facts)
		}
	})
}

func readTestdataF(f *testing.F, name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return string(b)
}

// shRunner runs probe scripts in this machine's sh: the host part is real,
// the container has no process here.
type shRunner struct{ lines []string }

func (r *shRunner) Run(ctx context.Context, cmd transport.Command) (transport.Result, error) {
	r.lines = append(r.lines, cmd.Line)
	out, err := exec.CommandContext(ctx, "sh", "-c", cmd.Line).Output()
	return transport.Result{Stdout: out}, err
}

// A probe answered through the API: the host part runs over SSH without
// any docker command, and the answers read as the CLI's would.
func TestProbeAnswered(t *testing.T) {
	raw := `{"Id":"abc123","Name":"/cvs-lab","Image":"sha256:9c1d","State":{"Status":"exited","StartedAt":"2026-11-23T15:00:01Z","Pid":0},"Config":{"Image":"reg:5000/w:1","Labels":{"cvs.setup-hash":"none"}}}`
	r := &shRunner{}
	f := ProbeAnswered(context.Background(), r, "h1", spec, Answers{Version: "28.0.1", Container: json.RawMessage(raw), ImageID: "sha256:9c1d"})
	if f.Error != "" || f.DockerVersion != "28.0.1" || f.Container.State != StateExited || f.Container.ID != "abc123" ||
		f.ImageID != "sha256:9c1d" || f.Container.SSHD != SSHDNotApplied || f.HostFacts.DiskFreeKiB == 0 {
		t.Errorf("facts = %+v", f)
	}
	for _, cli := range []string{"docker version", "docker container inspect", "docker image inspect"} {
		if len(r.lines) != 1 || strings.Contains(r.lines[0], cli) {
			t.Errorf("the script runs %s:\n%s", cli, r.lines[0])
		}
	}
	// No container, no image, and an image error that is not "no such".
	f = ProbeAnswered(context.Background(), r, "h1", spec, Answers{Version: "28.0.1", ImageErr: errors.New("daemon: i/o timeout")})
	if f.Container.State != StateAbsent || f.ErrorKind != KindProbeImage || !strings.Contains(f.Error, "i/o timeout") {
		t.Errorf("facts = %+v", f)
	}
	// A container error is never absent.
	f = ProbeAnswered(context.Background(), r, "h1", spec, Answers{Version: "28.0.1", ContainerErr: errors.New("daemon: EOF")})
	if f.Container.State != StateUnknown || f.ErrorKind != KindProbeContainer {
		t.Errorf("facts = %+v", f)
	}
}

// Issue 21 item 2: the probe learns each host's architecture (uname -m),
// by its OCI name, for choosing the platform of a multi-platform image.
func TestProbeKnowsTheArchitecture(t *testing.T) {
	if !strings.Contains(ProbeScript(spec), "uname -m") {
		t.Error("the probe does not ask uname -m")
	}
	for uname, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "": ""} {
		out := "\n" + mark + "host 0\nmachine-id abc\narch " + uname + "\n" + mark + "version 0\n20.10\n" + mark + "end 0\n"
		if f := ParseProbe("h1", spec, out); f.HostFacts.Arch != want {
			t.Errorf("uname -m %q: arch %q, want %q", uname, f.HostFacts.Arch, want)
		}
	}
}

func TestOCIArch(t *testing.T) {
	for uname, want := range map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
		"ppc64le": "ppc64le", "s390x": "s390x", "armv7l": "arm", "": "", " x86_64\n": "amd64"} {
		if got := OCIArch(uname); got != want {
			t.Errorf("OCIArch(%q) = %q, want %q", uname, got, want)
		}
	}
}
