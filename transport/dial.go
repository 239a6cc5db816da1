// Package transport is cvs's SSH layer: one connection per host per
// invocation, host keys checked against known_hosts, commands run with a
// time limit that really stops them, and typed per-host errors.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cvs-tool/cvs/cluster"
)

// Options configure a Dialer.
type Options struct {
	HostKeyCheck   cluster.HostKeyCheck
	KnownHosts     string
	ConnectTimeout time.Duration
	KeepAlive      time.Duration
	// AgentSocket is the ssh-agent socket; empty means no agent.
	AgentSocket string
	// DefaultIdentityFiles are tried when a host names no identity file and
	// there is no agent.
	DefaultIdentityFiles []string
}

// OptionsFor returns the Options a cluster file asks for, with the agent
// taken from SSH_AUTH_SOCK.
func OptionsFor(cfg *cluster.Config) Options {
	home, _ := os.UserHomeDir()
	var defaults []string
	for _, f := range cluster.DefaultIdentityFiles {
		defaults = append(defaults, strings.Replace(f, "~", home, 1))
	}
	return Options{
		HostKeyCheck:         cfg.HostKeyCheck,
		KnownHosts:           cfg.KnownHosts,
		ConnectTimeout:       cfg.ConnectTimeout,
		KeepAlive:            cfg.KeepAlive,
		AgentSocket:          os.Getenv("SSH_AUTH_SOCK"),
		DefaultIdentityFiles: defaults,
	}
}

// Dialer opens SSH connections. One Dialer serves a whole invocation: it
// parses keys and known_hosts once and shares a bastion connection between
// the hosts behind it.
type Dialer struct {
	opts       Options
	hostKeys   *hostKeys
	keys       *keyring
	handshakes atomic.Int64

	mu    sync.Mutex
	jumps map[string]*jump
}

// jump is one bastion connection, shared by the hosts behind it. A
// connection that died is dialled again; a failed dial is retried only
// after a backoff, so that hundreds of hosts behind a dead bastion do not
// each wait for it.
type jump struct {
	mu       sync.Mutex
	client   *ssh.Client
	dead     chan struct{} // closed when client's connection ends
	err      error
	failedAt time.Time
	failures int
}

// jumpBackoff is how long a failed bastion dial is not retried: 1s after
// the first failure, doubling up to 30s.
func jumpBackoff(failures int) time.Duration {
	return min(time.Second<<min(failures-1, 5), 30*time.Second)
}

// NewDialer checks the options (the known_hosts file must exist under
// strict checking) and returns a Dialer.
func NewDialer(o Options) (*Dialer, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = cluster.DefaultConnectTimeout
	}
	hk, err := newHostKeys(o.HostKeyCheck, o.KnownHosts)
	if err != nil {
		return nil, err
	}
	kr, err := newKeyring(o.AgentSocket)
	if err != nil {
		return nil, err
	}
	return &Dialer{opts: o, hostKeys: hk, keys: kr, jumps: map[string]*jump{}}, nil
}

// Handshakes returns how many SSH handshakes completed so far (bastions
// included).
func (d *Dialer) Handshakes() int { return int(d.handshakes.Load()) }

// Close closes the bastion connections and the agent connection. Clients
// returned by Dial are closed by their owners.
func (d *Dialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range d.jumps {
		if j.client != nil {
			j.client.Close()
		}
	}
	d.keys.close()
}

// Dial connects and authenticates to h, through its proxy_jump bastion when
// it has one. Every failure is a *HostError naming h.
func (d *Dialer) Dial(ctx context.Context, h cluster.Host) (*Client, error) {
	var via *ssh.Client
	if h.ProxyJump != "" || len(h.Jumps) > 0 {
		jc, err := d.via(ctx, h)
		if err != nil {
			return nil, err
		}
		via = jc
	}
	c, err := d.dial(ctx, h.Name, h.Addr, h.Port, h.User, h.IdentityFiles, via)
	if err != nil {
		return nil, err
	}
	cl := &Client{Host: h, ssh: c, done: make(chan struct{})}
	// Wait returns when the connection ends, however it ends; the client
	// then reports itself dead.
	go func() {
		c.Wait()
		cl.Close()
	}()
	if d.opts.KeepAlive > 0 {
		go cl.keepAlive(d.opts.KeepAlive)
	}
	return cl, nil
}

// via returns the connection to the last bastion of h's proxy_jump chain,
// dialling (or dialling again) each hop through the previous one.
func (d *Dialer) via(ctx context.Context, h cluster.Host) (*ssh.Client, error) {
	if len(h.Jumps) == 0 {
		return nil, &HostError{Host: h.Name, Kind: KindSSH, Detail: fmt.Sprintf("proxy_jump %q was not resolved into bastions (cluster.Host.Jumps)", h.ProxyJump)}
	}
	var prev *ssh.Client
	var chain []string
	for _, j := range h.Jumps {
		chain = append(chain, j.String())
		c, err := d.jumpClient(ctx, strings.Join(chain, ","), j, prev)
		if err != nil {
			kind := KindSSH
			var he *HostError
			if errors.As(err, &he) {
				kind = he.Kind
			}
			return nil, &HostError{Host: h.Name, Kind: kind, Err: err, Detail: fmt.Sprintf("through proxy_jump %s: %v", j, err)}
		}
		prev = c
	}
	return prev, nil
}

// jumpClient returns the live connection to bastion j reached through via
// (nil: directly), key naming the chain up to j.
func (d *Dialer) jumpClient(ctx context.Context, key string, j cluster.Jump, via *ssh.Client) (*ssh.Client, error) {
	d.mu.Lock()
	e, ok := d.jumps[key]
	if !ok {
		e = &jump{}
		d.jumps[key] = e
	}
	d.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		select {
		case <-e.dead:
			e.client = nil
		default:
			return e.client, nil
		}
	}
	if e.err != nil && time.Since(e.failedAt) < jumpBackoff(e.failures) {
		return nil, e.err
	}
	c, err := d.dial(ctx, "bastion "+j.String(), j.Addr, j.Port, j.User, j.IdentityFiles, via)
	if err != nil {
		e.err, e.failedAt = err, time.Now()
		e.failures++
		return nil, err
	}
	e.client, e.err, e.failures = c, nil, 0
	dead := make(chan struct{})
	e.dead = dead
	go func() {
		c.Wait()
		close(dead)
	}()
	return c, nil
}

func (d *Dialer) dial(ctx context.Context, name, host string, port int, user string, identityFiles []string, via *ssh.Client) (*ssh.Client, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	methods, offered, err := d.keys.methods(identityFiles, d.opts.DefaultIdentityFiles)
	if err != nil {
		return nil, &HostError{Host: name, Kind: KindAuth, Err: err, Detail: err.Error()}
	}
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              methods,
		HostKeyCallback:   d.hostKeys.callbackFor(name),
		HostKeyAlgorithms: d.hostKeys.algorithms(addr),
		Timeout:           d.opts.ConnectTimeout,
		ClientVersion:     "SSH-2.0-cvs",
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()

	var conn net.Conn
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", addr)
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, classifyDial(name, addr, err, d.opts.ConnectTimeout)
	}
	// The handshake has no context of its own: a deadline bounds it, and
	// closing the connection ends it early when ctx is cancelled.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stopped := stop()
	if err != nil {
		conn.Close()
		if !stopped || ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &HostError{Host: name, Kind: KindTimeout, Err: err,
				Detail: fmt.Sprintf("SSH handshake with %s did not finish within connect_timeout (%s)", addr, d.opts.ConnectTimeout)}
		}
		return nil, classifyHandshake(name, addr, user, offered, err)
	}
	conn.SetDeadline(time.Time{})
	d.handshakes.Add(1)
	return ssh.NewClient(sc, chans, reqs), nil
}

func classifyDial(name, addr string, err error, timeout time.Duration) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &HostError{Host: name, Kind: KindRefused, Err: err,
			Detail: fmt.Sprintf("nothing accepts connections on %s; is sshd running there and is the port right?", addr)}
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &HostError{Host: name, Kind: KindUnreachable, Err: err,
			Detail: fmt.Sprintf("no answer from %s within connect_timeout (%s); is the host up and the address right?", addr, timeout)}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &HostError{Host: name, Kind: KindUnreachable, Err: err,
			Detail: fmt.Sprintf("cannot resolve %q: %v", dnsErr.Name, dnsErr.Err)}
	}
	return &HostError{Host: name, Kind: KindUnreachable, Err: err, Detail: fmt.Sprintf("connecting to %s: %v", addr, err)}
}

func classifyHandshake(name, addr, user string, offered []string, err error) error {
	var he *HostError
	if errors.As(err, &he) {
		return he // a host key verdict, already explained
	}
	msg := err.Error()
	if strings.Contains(msg, "unable to authenticate") {
		return &HostError{Host: name, Kind: KindAuth, Err: err, Detail: fmt.Sprintf(
			"%s refused user %q with every key offered (%s); the server's message: %s. Check the user and that the public key is in the host's authorized_keys",
			addr, user, strings.Join(offered, ", "), msg)}
	}
	if strings.Contains(msg, "no common algorithm for host key") {
		return &HostError{Host: name, Kind: KindHostKeyMismatch, Err: err, Detail: fmt.Sprintf(
			"%s offers no host key of a type known_hosts holds for it (%v); the host may have been reinstalled", addr, msg)}
	}
	return &HostError{Host: name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("SSH handshake with %s: %v", addr, err)}
}
