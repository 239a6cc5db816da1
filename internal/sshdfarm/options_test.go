package sshdfarm

import (
	"strings"
	"testing"
)

func TestHostAddr(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		i      int
		want   string
	}{
		{"127.0.10", 0, "127.0.10.1"},
		{"127.0.10", 253, "127.0.10.254"},
		{"127.0.10", 254, "127.0.11.1"},
		{"127.0.10", 508, "127.0.12.1"},
		{"127.5.200", 9, "127.5.200.10"},
	} {
		if got := hostAddr(tc.subnet, tc.i); got != tc.want {
			t.Errorf("hostAddr(%q, %d) = %q, want %q", tc.subnet, tc.i, got, tc.want)
		}
	}
}

func TestOptionsWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"defaults", Options{N: 1}, ""},
		{"trailing dot optional", Options{N: 2, Subnet: "127.0.20"}, ""},
		{"spills into next octet", Options{N: 600, Subnet: "127.0.250."}, ""},
		{"no hosts", Options{}, "at least one host"},
		{"not loopback", Options{N: 1, Subnet: "10.0.0."}, "127.0.0.0/8"},
		{"too short", Options{N: 1, Subnet: "127.0"}, "127.0.0.0/8"},
		{"bad octet", Options{N: 1, Subnet: "127.x.1."}, "bad octet"},
		{"runs past 255", Options{N: 300, Subnet: "127.0.255."}, "run past"},
		{"bad port", Options{N: 1, Port: 70000}, "out of range"},
		{"unknown key type", Options{N: 1, HostKeyTypes: []string{"dsa"}}, "unknown host key type"},
		{"duplicate key type", Options{N: 1, HostKeyTypes: []string{"rsa", "rsa"}}, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.o.withDefaults()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if strings.HasSuffix(o.Subnet, ".") || len(o.HostKeyTypes) == 0 {
					t.Errorf("defaults not applied: %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSSHDConfigExtraPlacement(t *testing.T) {
	h := &Host{Addr: "127.0.10.1", Port: 2222, dir: "/farm/host001"}
	cfg := sshdConfig(h, []string{"/farm/host001/key"}, "/farm/authorized_keys",
		[]string{"LogLevel DEBUG3", "Match User nobody", "  ForceCommand /bin/false"}, nil)
	lines := strings.Split(strings.TrimSpace(cfg), "\n")
	index := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line starting %q in:\n%s", prefix, cfg)
		return -1
	}
	if index("LogLevel DEBUG3") > index("LogLevel INFO") {
		t.Errorf("Extra line must come before the farm's own LogLevel so that it wins:\n%s", cfg)
	}
	if m := index("Match User nobody"); m != len(lines)-2 {
		t.Errorf("Match block must be at the end of the file:\n%s", cfg)
	}
	if !strings.Contains(cfg, "ListenAddress 127.0.10.1:2222\n") {
		t.Errorf("missing ListenAddress:\n%s", cfg)
	}
}
