package transport

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/charmbracelet/log"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cvs-tool/cvs/cluster"
)

// hostKeys verifies host keys against one known_hosts file, in the mode the
// cluster file asks for. It is shared by every connection of an invocation.
type hostKeys struct {
	mode cluster.HostKeyCheck
	file string

	mu       sync.RWMutex
	callback ssh.HostKeyCallback // nil when the file does not exist
	lines    []string            // the file's lines, to quote them in errors
	probe    ssh.PublicKey       // a key no file holds, to list a host's keys
}

func newHostKeys(mode cluster.HostKeyCheck, file string) (*hostKeys, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	hk := &hostKeys{mode: mode, file: file, probe: probe}
	if mode == cluster.HostKeyOff {
		log.Warn("host key checking is OFF (host_key_check = \"off\"): any machine answering at a host's address is trusted")
		return hk, nil
	}
	if err := hk.reload(); err != nil {
		return nil, err
	}
	if hk.callback == nil && mode == cluster.HostKeyStrict {
		return nil, fmt.Errorf("known_hosts file %s does not exist; with host_key_check = \"strict\" every host key must be listed there (create it with ssh-keyscan after checking the fingerprints, or set host_key_check = \"accept-new\")", file)
	}
	return hk, nil
}

func (hk *hostKeys) reload() error {
	data, err := os.ReadFile(hk.file)
	if errors.Is(err, fs.ErrNotExist) {
		hk.callback, hk.lines = nil, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	cb, err := knownhosts.New(hk.file)
	if err != nil {
		return fmt.Errorf("known_hosts %s is malformed: %w", hk.file, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	hk.callback, hk.lines = cb, lines
	return nil
}

// algorithms returns the host key algorithms to offer for addr ("host:port"):
// those of the keys known_hosts holds for it first, so that a host with a
// recorded ed25519 key that also has an RSA key is asked for ed25519, then
// the rest of the defaults. A host known_hosts does not list is asked for a
// plain key only: accept-new records plain keys (a certificate recorded as
// a key line breaks every later connection), and strict reports it unknown
// with the key ssh-keyscan shows.
func (hk *hostKeys) algorithms(addr string) []string {
	hk.mu.RLock()
	defer hk.mu.RUnlock()
	if hk.mode == cluster.HostKeyOff {
		return nil
	}
	if hk.callback == nil {
		return plainHostKeyAlgorithms
	}
	var ke *knownhosts.KeyError
	err := hk.callback(addr, fakeAddr(addr), hk.probe)
	if !errors.As(err, &ke) {
		return nil
	}
	if len(ke.Want) == 0 {
		return plainHostKeyAlgorithms
	}
	var first []string
	add := func(algos ...string) {
		for _, a := range algos {
			if !contains(first, a) {
				first = append(first, a)
			}
		}
	}
	for _, k := range ke.Want {
		if hk.isCertAuthorityLine(k.Line) {
			add(certAlgorithms...)
			continue
		}
		add(algorithmsForKeyType(k.Key.Type())...)
	}
	for _, a := range defaultHostKeyAlgorithms {
		add(a)
	}
	return first
}

func (hk *hostKeys) isCertAuthorityLine(n int) bool {
	return n >= 1 && n <= len(hk.lines) && strings.HasPrefix(strings.TrimSpace(hk.lines[n-1]), "@cert-authority")
}

var certAlgorithms = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

var plainHostKeyAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

var defaultHostKeyAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
}

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		// An "ssh-rsa" key is used with the SHA-2 signature algorithms.
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{t}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// callbackFor returns the HostKeyCallback for one host; name is how the
// host is called in errors.
func (hk *hostKeys) callbackFor(name string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if hk.mode == cluster.HostKeyOff {
			return nil
		}
		err := hk.check(hostname, remote, key)
		var ke *knownhosts.KeyError
		if hk.mode == cluster.HostKeyAcceptNew && errors.As(err, &ke) && len(ke.Want) == 0 {
			return hk.record(name, hostname, remote, key)
		}
		return hk.explain(name, hostname, key, err)
	}
}

func (hk *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	hk.mu.RLock()
	defer hk.mu.RUnlock()
	if hk.callback == nil {
		return &knownhosts.KeyError{}
	}
	return hk.callback(hostname, remote, key)
}

func (hk *hostKeys) explain(name, hostname string, key ssh.PublicKey, err error) error {
	if err == nil {
		return nil
	}
	offered := key.Type() + " " + ssh.FingerprintSHA256(key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return &HostError{Host: name, Kind: KindHostKeyRevoked, Err: err, Detail: fmt.Sprintf(
			"the host offered %s, which %s:%d marks @revoked; refusing to connect", offered, re.Revoked.Filename, re.Revoked.Line)}
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return &HostError{Host: name, Kind: KindHostKeyUnknown, Err: err, Detail: fmt.Sprintf(
			"%s is not in %s (the host offered %s); after checking that fingerprint on the host, add it with `ssh-keyscan -p %s %s >> %s`, or set host_key_check = \"accept-new\"",
			hostname, hk.file, offered, portOf(hostname), hostOf(hostname), hk.file)}
	case errors.As(err, &ke):
		var held []string
		for _, w := range ke.Want {
			held = append(held, fmt.Sprintf("%s:%d (%s %s)", w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key)))
		}
		return &HostError{Host: name, Kind: KindHostKeyMismatch, Err: err, Detail: fmt.Sprintf(
			"HOST KEY MISMATCH: the host offered %s but known_hosts holds %s for %s. This may be an attack. If the host was reinstalled, remove the old entry (`ssh-keygen -R '%s' -f %s`) and connect again",
			offered, strings.Join(held, ", "), hostname, knownhosts.Normalize(hostname), hk.file)}
	default:
		return &HostError{Host: name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("checking the host key: %v", err)}
	}
}

// record appends the key of a host known_hosts does not list, and reloads
// the file. The append happens under an exclusive flock of the file, after
// reading it again, so that cvs processes (or ssh) recording keys at the
// same time lose none; the file is written through a symlink, never
// replaced, and created mode 0600.
func (hk *hostKeys) record(name, hostname string, remote net.Addr, key ssh.PublicKey) error {
	if _, isCert := key.(*ssh.Certificate); isCert {
		return &HostError{Host: name, Kind: KindHostKeyUnknown, Detail: fmt.Sprintf(
			"%s is not in %s and offered only a host certificate; accept-new records plain keys: add its certificate authority with an @cert-authority line, or its key with ssh-keyscan", hostname, hk.file)}
	}
	hk.mu.Lock()
	defer hk.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(hk.file), 0o700); err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	f, err := os.OpenFile(hk.file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("accept-new: locking %s: %w", hk.file, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	// Another process (or connection) may have recorded it meanwhile.
	if err := hk.reload(); err != nil {
		return err
	}
	if hk.callback != nil {
		err := hk.callback(hostname, remote, key)
		var ke *knownhosts.KeyError
		if err == nil || !errors.As(err, &ke) || len(ke.Want) > 0 {
			return hk.explain(name, hostname, key, err)
		}
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("accept-new: recording the host key in %s: %w", hk.file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	log.Warn("recorded new host key", "host", name, "key", key.Type()+" "+ssh.FingerprintSHA256(key), "known_hosts", hk.file)
	return hk.reload()
}

func hostOf(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

func portOf(hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "22"
	}
	return p
}
