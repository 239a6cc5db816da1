package session

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/internal/sshdfarm"
	"github.com/cvs-tool/cvs/transport"
)

// Issue 20 item 11: cvs init scans a host behind a proxy_jump bastion
// through that bastion, so it records the key of the machine the cluster's
// connections will reach, not whatever answers at that name on this
// machine's network. Real sshds on loopback: the bastion runs with its own
// /etc/hosts, where "localhost" is the target (127.0.58.1); from the test,
// localhost is 127.0.0.1, where an impostor sshd listens on the same port.
func TestRealSSHDInitScansThroughTheBastion(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the bastion's own /etc/hosts needs a mount namespace (root)")
	}
	impostor := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.0."})
	port := impostor.Hosts[0].Port
	target := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.58.", Port: port})
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte(target.Hosts[0].Addr+" localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bastion := sshdfarm.StartT(t, sshdfarm.Options{N: 1, Subnet: "127.0.59.", HostsFile: hosts, Extra: []string{"AllowTcpForwarding yes"}})
	b := bastion.Hosts[0]
	kh := filepath.Join(t.TempDir(), "known_hosts")
	bk, _ := os.ReadFile(bastion.KnownHosts)
	if err := os.WriteFile(kh, bk, 0o600); err != nil {
		t.Fatal(err)
	}
	h := cluster.Host{Name: "localhost", Addr: "localhost", Port: port, User: target.User,
		IdentityFiles: []string{target.ClientKey},
		ProxyJump:     fmt.Sprintf("%s@%s", bastion.User, b.HostPort()),
		Jumps:         []cluster.Jump{{Addr: b.Addr, Port: b.Port, User: bastion.User, IdentityFiles: []string{bastion.ClientKey}}}}
	cfg := &cluster.Config{Hosts: []cluster.Host{h}, KnownHosts: kh, HostKeyCheck: cluster.HostKeyStrict,
		ConnectTimeout: 5 * time.Second, MaxParallel: 4}

	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(target.Hosts[0].HostKeys["ed25519"]))
	if err != nil {
		t.Fatal(err)
	}
	scans := ScanHosts(context.Background(), cfg)
	if len(scans) != 1 || scans[0].Error != "" || len(scans[0].Keys) != 1 {
		t.Fatalf("scan: %+v", scans)
	}
	if got := scans[0].Keys[0].Fingerprint; got != ssh.FingerprintSHA256(want) {
		t.Fatalf("scanned %s, want the target's %s (the key reached through the bastion)", got, ssh.FingerprintSHA256(want))
	}
	if n, err := TrustHostKeys(cfg, scans); n != 1 || err != nil {
		t.Fatalf("trust: %d %v", n, err)
	}
	// What init recorded is what a strict connection through the bastion
	// meets.
	d, err := transport.NewDialer(transport.Options{HostKeyCheck: cluster.HostKeyStrict, KnownHosts: kh, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("strict dial through the bastion after init: %v", err)
	}
	c.Close()

	// A bastion known_hosts does not list is not trusted for the hosts
	// behind it: the scan fails naming it and saying what to do.
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	cfg.KnownHosts = empty
	scans = ScanHosts(context.Background(), cfg)
	if len(scans[0].Keys) != 0 || !strings.Contains(scans[0].Error, b.HostPort()) || !strings.Contains(scans[0].Error, "ssh-keyscan") ||
		!strings.Contains(scans[0].Error, "record the bastion's key first") {
		t.Errorf("scan through an unknown bastion: %+v", scans[0])
	}
}
