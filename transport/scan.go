package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cvs-tool/cvs/cluster"
)

// errGotKey ends a key scan's handshake once the host showed its key.
var errGotKey = errors.New("host key received")

// ScanHostKeys asks the SSH server at host:port for its host keys, one
// handshake per key type (ed25519, ECDSA, RSA), as ssh-keyscan does: no
// authentication, nothing trusted. A type the host does not have is
// skipped; an unreachable host is a *HostError.
func ScanHostKeys(ctx context.Context, host string, port int, timeout time.Duration) ([]ssh.PublicKey, error) {
	return scanHostKeys(ctx, host, port, timeout, func(ctx context.Context, addr string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	})
}

// ScanHostKeys asks h for its host keys as the package's ScanHostKeys
// does, through h's proxy_jump bastions when it has some: the keys are
// those of the machine h's connections will reach, which may not be what
// answers at h's address from here. The bastions are dialled and checked
// as Dial does (a bastion known_hosts does not list is an error naming it
// under strict checking); h itself is only asked, never trusted.
func (d *Dialer) ScanHostKeys(ctx context.Context, h cluster.Host) ([]ssh.PublicKey, error) {
	if h.ProxyJump == "" && len(h.Jumps) == 0 {
		return ScanHostKeys(ctx, h.Addr, h.Port, d.opts.ConnectTimeout)
	}
	via, err := d.via(ctx, h)
	if err != nil {
		return nil, err
	}
	return scanHostKeys(ctx, h.Addr, h.Port, d.opts.ConnectTimeout, func(ctx context.Context, addr string) (net.Conn, error) {
		return via.DialContext(ctx, "tcp", addr)
	})
}

func scanHostKeys(ctx context.Context, host string, port int, timeout time.Duration, dial func(context.Context, string) (net.Conn, error)) ([]ssh.PublicKey, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var keys []ssh.PublicKey
	var lastErr error
	for _, algos := range [][]string{{ssh.KeyAlgoED25519}, {ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521}, {ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}} {
		var got ssh.PublicKey
		cfg := &ssh.ClientConfig{User: "cvs-keyscan", HostKeyAlgorithms: algos, Timeout: timeout, ClientVersion: "SSH-2.0-cvs",
			HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
				got = key
				return errGotKey
			}}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err := dial(cctx, addr)
		if err != nil {
			cancel()
			return nil, classifyDial(host, addr, err, timeout)
		}
		// A connection through a bastion has no deadlines: closing it
		// when the time is up ends the handshake as a deadline would.
		conn.SetDeadline(time.Now().Add(timeout))
		stop := context.AfterFunc(cctx, func() { conn.Close() })
		_, _, _, err = ssh.NewClientConn(conn, addr, cfg)
		stop()
		cancel()
		conn.Close()
		if got != nil {
			keys = append(keys, got)
			continue
		}
		lastErr = err
	}
	if len(keys) == 0 {
		return nil, &HostError{Host: host, Kind: KindSSH, Err: lastErr, Detail: fmt.Sprintf("no host key from %s: %v", addr, lastErr)}
	}
	return keys, nil
}

// KnownHostsLine is the known_hosts line of key for host:port.
func KnownHostsLine(host string, port int, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(host, strconv.Itoa(port)))}, key)
}

// AppendKnownHosts appends lines to a known_hosts file (created 0600, its
// folder 0700) under an exclusive flock, writing through a symlink.
func AppendKnownHosts(file string, lines []string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	var data []byte
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			data = append(data, '\n')
		}
	}
	for _, l := range lines {
		data = append(data, l+"\n"...)
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// KnownHostsAddr is how known_hosts matching names host:port.
func KnownHostsAddr(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
