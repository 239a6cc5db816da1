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

type jump struct {
	once   sync.Once
	client *ssh.Client
	err    error
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
	if h.ProxyJump != "" {
		jc, err := d.jump(ctx, h)
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

func (d *Dialer) jump(ctx context.Context, h cluster.Host) (*ssh.Client, error) {
	d.mu.Lock()
	j, ok := d.jumps[h.ProxyJump]
	if !ok {
		j = &jump{}
		d.jumps[h.ProxyJump] = j
	}
	d.mu.Unlock()
	j.once.Do(func() {
		user, addr, port := parseJump(h.ProxyJump, h.User)
		j.client, j.err = d.dial(ctx, "bastion "+h.ProxyJump, addr, port, user, h.IdentityFiles, nil)
	})
	if j.err != nil {
		var he *HostError
		if errors.As(j.err, &he) {
			return nil, &HostError{Host: h.Name, Kind: he.Kind, Err: j.err, Detail: "through proxy_jump: " + j.err.Error()}
		}
		return nil, &HostError{Host: h.Name, Kind: KindSSH, Err: j.err}
	}
	return j.client, nil
}

// parseJump splits "[user@]host[:port]".
func parseJump(spec, defaultUser string) (user, addr string, port int) {
	user, port = defaultUser, 22
	if at := strings.LastIndexByte(spec, '@'); at >= 0 {
		user, spec = spec[:at], spec[at+1:]
	}
	if h, p, err := net.SplitHostPort(spec); err == nil {
		if n, err := strconv.Atoi(p); err == nil {
			return user, h, n
		}
	}
	return user, strings.Trim(spec, "[]"), port
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
