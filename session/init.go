package session

import (
	"context"
	"errors"
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
// ssh-keyscan) and compares them with cfg's known_hosts file.
func ScanHosts(ctx context.Context, cfg *cluster.Config) []ScanResult {
	var cb ssh.HostKeyCallback
	if c, err := knownhosts.New(cfg.KnownHosts); err == nil {
		cb = c
	}
	out := make([]ScanResult, len(cfg.Hosts))
	fanout.Run(ctx, len(cfg.Hosts), cfg.MaxParallel, func(ctx context.Context, i int) error {
		h := cfg.Hosts[i]
		out[i].Host = h.Name
		timeout := cfg.ConnectTimeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		keys, err := transport.ScanHostKeys(ctx, h.Addr, h.Port, timeout)
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
