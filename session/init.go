package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fanout"
	"github.com/cvs-tool/cvs/transport"
)

// HostKey is one key a host showed, and what known_hosts says of it.
type HostKey struct {
	Host        string `json:"host"`
	Type        string `json:"type"`
	Fingerprint string `json:"fingerprint"`
	// Known: known_hosts lists this key for the host; Mismatch: it lists
	// another one (the host may not be who it claims to be).
	Known    bool   `json:"known"`
	Mismatch bool   `json:"mismatch"`
	Line     string `json:"known_hosts_line"`
}

// ScanResult is what scanning one host gave.
type ScanResult struct {
	Host  string    `json:"host"`
	Keys  []HostKey `json:"keys"`
	Error string    `json:"error,omitempty"`
}

// ScanHosts asks every host of cfg for its SSH host keys (no login, as
// ssh-keyscan) and compares them with cfg's known_hosts file. A host behind
// proxy_jump bastions is asked through them, as the cluster's connections
// will reach it; the bastions must be in known_hosts already (checked
// strictly, whatever host_key_check says): a key got through a bastion
// nobody checked proves nothing.
func ScanHosts(ctx context.Context, cfg *cluster.Config) []ScanResult {
	var cb ssh.HostKeyCallback
	if c, err := knownhosts.New(cfg.KnownHosts); err == nil {
		cb = c
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts := transport.OptionsFor(cfg)
	opts.HostKeyCheck, opts.ConnectTimeout, opts.KeepAlive = cluster.HostKeyStrict, timeout, 0
	var d *transport.Dialer
	var dialerErr error
	for _, h := range cfg.Hosts {
		if h.ProxyJump != "" || len(h.Jumps) > 0 {
			d, dialerErr = transport.NewDialer(opts)
			break
		}
	}
	if d != nil {
		defer d.Close()
	}
	out := make([]ScanResult, len(cfg.Hosts))
	fanout.Run(ctx, len(cfg.Hosts), cfg.MaxParallel, func(ctx context.Context, i int) error {
		h := cfg.Hosts[i]
		out[i].Host = h.Name
		var keys []ssh.PublicKey
		var err error
		switch {
		case h.ProxyJump == "" && len(h.Jumps) == 0:
			keys, err = transport.ScanHostKeys(ctx, h.Addr, h.Port, timeout)
		case dialerErr != nil:
			err = fmt.Errorf("behind proxy_jump %s, whose keys must be known first: %w", h.ProxyJump, dialerErr)
		default:
			keys, err = d.ScanHostKeys(ctx, h)
			if transport.ErrorKind(err) == transport.KindHostKeyUnknown {
				err = fmt.Errorf("%w; init records no key got through a bastion it cannot check (accept-new does not apply here): record the bastion's key first, then run cvs init again", err)
			}
		}
		if err != nil {
			out[i].Error = err.Error()
			return nil
		}
		for _, k := range keys {
			hk := HostKey{Host: h.Name, Type: k.Type(), Fingerprint: ssh.FingerprintSHA256(k), Line: transport.KnownHostsLine(h.Addr, h.Port, k)}
			if cb != nil {
				addr := transport.KnownHostsAddr(h.Addr, h.Port)
				err := cb(addr, &net.TCPAddr{IP: net.ParseIP(h.Addr), Port: h.Port}, k)
				var ke *knownhosts.KeyError
				switch {
				case err == nil:
					hk.Known = true
				case errors.As(err, &ke) && len(ke.Want) > 0:
					hk.Mismatch = true
				}
			}
			out[i].Keys = append(out[i].Keys, hk)
		}
		return nil
	})
	return out
}

// TrustHostKeys appends the keys not yet known to cfg's known_hosts file.
func TrustHostKeys(cfg *cluster.Config, scans []ScanResult) (int, error) {
	var lines []string
	for _, s := range scans {
		for _, k := range s.Keys {
			if !k.Known && !k.Mismatch {
				lines = append(lines, k.Line)
			}
		}
	}
	if len(lines) == 0 {
		return 0, nil
	}
	return len(lines), transport.AppendKnownHosts(cfg.KnownHosts, lines)
}
