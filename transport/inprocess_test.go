package transport

// Tests against an in-process golang.org/x/crypto/ssh server: host
// certificates, revoked keys and handshake time limits, which are awkward
// to set up with a real sshd.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cvs-tool/cvs/cluster"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs an SSH server on 127.0.0.1 presenting hostKey and accepting
// clientKey; every exec request exits 0 without output.
func serve(t *testing.T, hostKey ssh.Signer, clientKey ssh.PublicKey, moreHostKeys ...ssh.Signer) cluster.Host {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostKey)
	for _, k := range moreHostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, chReqs, _ := nc.Accept()
					go func() {
						for r := range chReqs {
							r.Reply(r.Type == "exec", nil)
							if r.Type == "exec" {
								ch.SendRequest("exit-status", false, ssh.Marshal(struct{ C uint32 }{0}))
								ch.Close()
							}
						}
					}()
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	return cluster.Host{Name: "inproc", Addr: "127.0.0.1", Port: port, User: "u"}
}

func writeClientKey(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id")
	os.WriteFile(p, pemEncode(block), 0o600)
	s, _ := ssh.NewSignerFromKey(priv)
	return p, s.PublicKey()
}

// hostCertSigner is hostKey presenting a host certificate for 127.0.0.1
// signed by ca.
func hostCertSigner(t *testing.T, ca, hostKey ssh.Signer) ssh.Signer {
	t.Helper()
	cert := &ssh.Certificate{Key: hostKey.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"127.0.0.1"},
		ValidBefore: ssh.CertTimeInfinity, Serial: 1}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(cert, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInProcessCertAuthority(t *testing.T) {
	ca := newSigner(t)
	hostKey := newSigner(t)
	certSigner := hostCertSigner(t, ca, hostKey)
	keyFile, clientPub := writeClientKey(t)
	h := serve(t, certSigner, clientPub)
	h.IdentityFiles = []string{keyFile}

	kh := filepath.Join(t.TempDir(), "known_hosts")
	// x/crypto's knownhosts matches "*" only on port 22, so the pattern
	// names the test server's port.
	pattern := fmt.Sprintf("[127.0.0.1]:%d", h.Port)
	os.WriteFile(kh, []byte("@cert-authority "+pattern+" "+string(ssh.MarshalAuthorizedKey(ca.PublicKey()))), 0o600)
	d := dialer(t, cluster.HostKeyStrict, kh)
	if algos := d.hostKeys.algorithms(net.JoinHostPort(h.Addr, strconv.Itoa(h.Port))); len(algos) == 0 || !strings.Contains(algos[0], "cert-v01") {
		t.Errorf("a @cert-authority host must be asked for certificates first, got %v", algos)
	}
	c, err := d.Dial(context.Background(), h)
	if err != nil {
		t.Fatalf("certificate signed by the known CA refused: %v", err)
	}
	c.Close()

	// The same CA marked @revoked is refused.
	os.WriteFile(kh, []byte("@cert-authority "+pattern+" "+string(ssh.MarshalAuthorizedKey(ca.PublicKey()))+
		"@revoked * "+string(ssh.MarshalAuthorizedKey(ca.PublicKey()))), 0o600)
	_, err = dialer(t, cluster.HostKeyStrict, kh).Dial(context.Background(), h)
	if err == nil {
		t.Fatal("a certificate from a revoked CA was accepted")
	}
}

func TestInProcessRevokedKey(t *testing.T) {
	hostKey := newSigner(t)
	keyFile, clientPub := writeClientKey(t)
	h := serve(t, hostKey, clientPub)
	h.IdentityFiles = []string{keyFile}
	line := fmt.Sprintf("[127.0.0.1]:%d %s", h.Port, ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(line+"@revoked * "+string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))), 0o600)
	_, err := dialer(t, cluster.HostKeyStrict, kh).Dial(context.Background(), h)
	if he := hostErrorKind(t, err); he.Kind != KindHostKeyRevoked || !strings.Contains(err.Error(), kh+":2") {
		t.Fatalf("got %v", err)
	}
}

func TestInProcessHostKeyOffAcceptsAnything(t *testing.T) {
	keyFile, clientPub := writeClientKey(t)
	h := serve(t, newSigner(t), clientPub)
	h.IdentityFiles = []string{keyFile}
	c, err := dialer(t, cluster.HostKeyOff, "/nonexistent/known_hosts").Dial(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A server that accepts TCP but never speaks SSH must not hang the dial.
func TestInProcessHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	keyFile, _ := writeClientKey(t)
	d, err := NewDialer(Options{HostKeyCheck: cluster.HostKeyOff, ConnectTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := time.Now()
	_, err = d.Dial(context.Background(), cluster.Host{Name: "silent", Addr: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "u", IdentityFiles: []string{keyFile}})
	if he := hostErrorKind(t, err); he.Kind != KindTimeout {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("dial took %s with a 300ms connect_timeout", el)
	}
}

func TestPassphraseProtectedKeyExplainsAgent(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id")
	os.WriteFile(p, pemEncode(block), 0o600)
	_, err = parseKeyFile(p)
	if err == nil || !strings.Contains(err.Error(), "ssh-add") {
		t.Fatalf("got %v", err)
	}
}

func TestClassifyDial(t *testing.T) {
	err := classifyDial("h", "10.0.0.1:22", &net.DNSError{Name: "nohost", Err: "no such host"}, time.Second)
	if he := hostErrorKind(t, err); he.Kind != KindUnreachable || !strings.Contains(err.Error(), "cannot resolve") {
		t.Errorf("dns: %v", err)
	}
	err = classifyDial("h", "10.0.0.1:22", context.DeadlineExceeded, time.Second)
	if he := hostErrorKind(t, err); he.Kind != KindUnreachable || !strings.Contains(err.Error(), "connect_timeout") {
		t.Errorf("timeout: %v", err)
	}
}

// Issue 9 item 8: a host presenting a host certificate besides its plain
// key. Unknown to known_hosts, it is asked for its plain key: accept-new
// records a plain line that later connections accept, and strict reports
// host-key-unknown.
func TestInProcessUnknownHostWithCertificate(t *testing.T) {
	ca, hostKey := newSigner(t), newSigner(t)
	certSigner := hostCertSigner(t, ca, hostKey)
	keyFile, clientPub := writeClientKey(t)
	h := serve(t, certSigner, clientPub, hostKey)
	h.IdentityFiles = []string{keyFile}
	kh := filepath.Join(t.TempDir(), "known_hosts")

	for i := 0; i < 2; i++ {
		c, err := dialer(t, cluster.HostKeyAcceptNew, kh).Dial(context.Background(), h)
		if err != nil {
			t.Fatalf("accept-new, connection %d: %v", i+1, err)
		}
		c.Close()
	}
	data, _ := os.ReadFile(kh)
	if strings.Contains(string(data), "cert-v01") || !strings.Contains(string(data), "ssh-ed25519 ") {
		t.Errorf("known_hosts after accept-new:\n%s", data)
	}

	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	_, err := dialer(t, cluster.HostKeyStrict, empty).Dial(context.Background(), h)
	if he := hostErrorKind(t, err); he.Kind != KindHostKeyUnknown || !strings.Contains(he.Detail, "ssh-keyscan") {
		t.Errorf("strict, unknown host with a certificate: %v", err)
	}
}

// Issue 9 item 9: known_hosts updates from several cvs processes at once
// (here: separate dialers, as separate processes have) lose no entry, and
// a symlinked known_hosts stays a symlink.
func TestConcurrentAcceptNewKeepsEveryEntry(t *testing.T) {
	keyFile, clientPub := writeClientKey(t)
	const n = 12
	hosts := make([]cluster.Host, n)
	for i := range hosts {
		hosts[i] = serve(t, newSigner(t), clientPub)
		hosts[i].IdentityFiles = []string{keyFile}
	}
	dir := t.TempDir()
	real := filepath.Join(dir, "real_known_hosts")
	os.WriteFile(real, []byte("# operator's file\n"), 0o600)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.Symlink(real, kh); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, n)
	for i := range hosts {
		go func() {
			c, err := dialer(t, cluster.HostKeyAcceptNew, kh).Dial(context.Background(), hosts[i])
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	for range hosts {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Lstat(kh); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("known_hosts is no longer a symlink: %v %v", fi.Mode(), err)
	}
	data, _ := os.ReadFile(real)
	for _, h := range hosts {
		if !strings.Contains(string(data), fmt.Sprintf("[127.0.0.1]:%d ", h.Port)) {
			t.Errorf("the entry of port %d was lost:\n%s", h.Port, data)
		}
	}
	if !strings.HasPrefix(string(data), "# operator's file\n") {
		t.Errorf("the operator's lines were not kept:\n%s", data)
	}
}
