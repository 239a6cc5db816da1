package dockerapi

import (
	"testing"

	"github.com/cvs-tool/cvs/docker"
)

// The API's create request says what the CLI's docker run flags say.
func TestCreateConfigMatchesTheCLIFlags(t *testing.T) {
	cfg, hc, err := createConfig(docker.RunSpec{Name: "c", Image: "reg/img:1", Network: "host", IPC: "host", PID: "host",
		Devices: []string{"/dev/kfd", "/dev/dri:/dev/dri2", "/dev/x:r", "/dev/y:/dev/z:rw"}, Volumes: []string{"/a:/b:ro"},
		CapAdd: []string{"SYS_PTRACE"}, SecurityOpt: []string{"seccomp=unconfined"}, GroupAdd: []string{"video"},
		ShmSize: "8g", Ulimits: []string{"memlock=-1:-1", "nofile=1024:2048"},
		Env: map[string]string{"B": "2", "A": "1"}, Labels: map[string]string{"cvs.managed": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Image != "reg/img:1" || len(cfg.Env) != 2 || cfg.Env[0] != "A=1" || cfg.Labels["cvs.managed"] != "true" || len(cfg.Cmd) != len(docker.KeepAlive) {
		t.Errorf("config %+v", cfg)
	}
	if hc.Init == nil || !*hc.Init || hc.NetworkMode != "host" || hc.IpcMode != "host" || hc.PidMode != "host" || hc.ShmSize != 8<<30 ||
		len(hc.Binds) != 1 || hc.CapAdd[0] != "SYS_PTRACE" || hc.GroupAdd[0] != "video" || hc.SecurityOpt[0] != "seccomp=unconfined" {
		t.Errorf("host config %+v", hc)
	}
	want := [][3]string{{"/dev/kfd", "/dev/kfd", "rwm"}, {"/dev/dri", "/dev/dri2", "rwm"}, {"/dev/x", "/dev/x", "r"}, {"/dev/y", "/dev/z", "rw"}}
	for i, d := range hc.Devices {
		if [3]string{d.PathOnHost, d.PathInContainer, d.CgroupPermissions} != want[i] {
			t.Errorf("device %d: %+v, want %v", i, d, want[i])
		}
	}
	if len(hc.Ulimits) != 2 || hc.Ulimits[0].Name != "memlock" || hc.Ulimits[0].Soft != -1 || hc.Ulimits[1].Hard != 2048 {
		t.Errorf("ulimits %+v %+v", hc.Ulimits[0], hc.Ulimits[1])
	}
	for _, bad := range []docker.RunSpec{{ShmSize: "lots"}, {Ulimits: []string{"nofile"}}, {Devices: []string{"/a:/b:xyz"}}, {Devices: []string{"/a:/b:r:w"}}} {
		if _, _, err := createConfig(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
