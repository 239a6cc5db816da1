package docker

import (
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/internal/golden"
	"github.com/cvs-tool/cvs/shell"
)

// Every docker command line cvs sends, as the remote shell receives it.
func TestCLIGolden(t *testing.T) {
	for _, sudo := range []bool{false, true} {
		d := CLI{Sudo: sudo}
		spec := RunSpec{Name: "c", Image: "reg:5000/w:1", Labels: map[string]string{"b": "2", "a": "x y"},
			EnvFile: "/tmp/cvs-env.X/env", Network: "host", IPC: "host", PID: "host", Privileged: true,
			Devices: []string{"/dev/kfd", "/dev/dri"}, Volumes: []string{"/data:/data:ro"}, CapAdd: []string{"SYS_PTRACE"},
			SecurityOpt: []string{"seccomp=unconfined"}, GroupAdd: []string{"video"}, ShmSize: "16g", Ulimits: []string{"memlock=-1:-1"}}
		lines := [][]string{
			d.Version(),
			d.Run(spec),
			d.Run(RunSpec{Name: "c", Image: "i:1"}),
			d.Run(RunSpec{Name: "c", Image: "i:1", Platform: "linux/arm64"}),
			d.Start("3f2a1b9c8d7e"),
			d.Remove("id1", "id2"),
			d.PsByLabel("cvs.run-id", "0123abcd"),
			d.InspectContainer("c", ""),
			d.InspectNamed("c", "{{.Image}}"),
			d.InspectImage("reg:5000/w:1", "{{.Id}}"),
			d.Pull("reg:5000/w:2", ""),
			d.Pull("reg:5000/w:2", "linux/arm64/v8"),
			d.ImageIDs(),
			d.ImageLayers("sha256:1", "sha256:2"),
			d.Load("/tmp/cvs-push.X/image.tar"),
			d.Tag("reg:5000/w:2", "reg:5000/w:1"),
			d.CopyInto("/tmp/cvs-steps.X/step0.sh", "c", "/tmp/cvs-r/step0.sh"),
			d.Exec("c", ExecOptions{}, "cat", "/run/cvs-sshd.log"),
			d.Exec("c", Root, "rm", "-rf", "--", "/tmp/cvs-r"),
			d.Exec("c", ExecOptions{Interactive: true, User: "0"}, "sh", "-s"),
		}
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(shell.Join(l...) + "\n")
		}
		b.WriteString(d.ExecWatched("c", ExecOptions{User: "nobody"}, "bash -eo pipefail /tmp/x.sh") + "\n")
		name := "cli.golden"
		if sudo {
			name = "cli-sudo.golden"
		}
		golden.Check(t, name, []byte(b.String()))
	}
}

func TestParseNamed(t *testing.T) {
	for _, tc := range []struct {
		out, name, value string
		ok               bool
	}{
		{"/c\tsha256:1\n", "c", "sha256:1", true},
		{"/abc123\trunning\n", "abc", "running", false}, // an ID prefix answered
		{"", "c", "", false},
		{"/c\t\n", "c", "", true},
	} {
		v, ok := ParseNamed(tc.out, tc.name)
		if v != tc.value || ok != tc.ok {
			t.Errorf("ParseNamed(%q, %q) = %q, %v", tc.out, tc.name, v, ok)
		}
	}
}
