// Package sshdfarm starts real OpenSSH sshd servers on loopback addresses,
// one process per simulated host, for tests and benchmarks.
//
// Every host gets its own address (127.0.10.1, 127.0.10.2, ...), its own
// host keys and its own sshd_config and log file; all hosts accept the
// farm's one client key. Nothing outside the farm's directory is read or
// written except /run/sshd, which sshd needs to exist when it runs as root
// (it is created empty, like the Debian init script does, if missing). The
// machine's own sshd and /etc/ssh are never touched.
//
// A farm lives until Stop; the context given to Start only bounds start-up.
package sshdfarm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/cvs-tool/cvs/fanout"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Defaults applied by Start for zero-valued Options fields.
const (
	DefaultSubnet      = "127.0.10."
	DefaultHostKeyType = "ed25519"

	// defaultStartTimeout bounds start-up when the caller's context has
	// no deadline, so a broken sshd install fails a test instead of
	// hanging it.
	defaultStartTimeout = 60 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
	stopGrace = 5 * time.Second
)

// Options describes a farm. The zero value of every field has a default.
type Options struct {
	// N is the number of hosts; at least 1.
	N int
	// Subnet is the address prefix of the hosts, three octets of
	// 127.0.0.0/8 with or without the trailing dot: "127.0.10." gives
	// 127.0.10.1 .. 127.0.10.254, then continues at 127.0.11.1.
	// Default DefaultSubnet.
	Subnet string
	// Port is the port every sshd listens on, each on its own address.
	// Zero picks a free port (and retries start-up on another port if it
	// was taken meanwhile), which lets tests run farms side by side.
	Port int
	// HostKeyTypes lists the host key types each host gets, in order:
	// "ed25519", "rsa", "ecdsa". Default {"ed25519"}.
	HostKeyTypes []string
	// Extra holds additional sshd_config lines. They are written before
	// the farm's own settings, so they override them (sshd keeps the
	// first value it reads for most keywords; note that an Extra SetEnv
	// replaces the farm's SetEnv SHLVL=1). Lines from the first "Match"
	// on are written at the end of the file, where Match blocks belong.
	Extra []string
	// Dir is the state directory (keys, configs, logs, known_hosts). It
	// is created if missing. Default: a new temporary directory, removed
	// by Stop.
	Dir string
	// HostsFile, when set, is the /etc/hosts the sshds resolve names
	// with: each runs in its own mount namespace (unshare -m) where this
	// file is bind-mounted over /etc/hosts. A bastion then reaches a name
	// at another address than the test does, as a bastion in front of a
	// private network does. Needs root and util-linux's unshare.
	HostsFile string
}

// Farm is a set of running sshd hosts. Its methods may be called from
// several goroutines.
type Farm struct {
	// Dir is the farm's state directory.
	Dir string
	// User is the login name the hosts accept: the current user.
	User string
	// Hosts are the hosts in address order. RotateHostKey updates the
	// entry of the host it restarts; read Hosts when no rotation runs.
	Hosts []Host
	// ClientKey is the path of the client's unencrypted private key
	// (OpenSSH format, mode 0600) that every host accepts.
	ClientKey string
	// ClientPub is the path of the matching public key (.pub).
	ClientPub string
	// ClientSigner is ClientKey, parsed.
	ClientSigner ssh.Signer
	// KnownHosts is the path of a known_hosts file, written by Start,
	// with one plain "[addr]:port type key" line per host and key type.
	// RotateHostKey does not update it.
	KnownHosts string

	sshd     string
	opts     Options
	ownDir   bool // Dir was created by Start and is removed by Stop
	mu       sync.Mutex
	procs    []*proc
	stopped  bool
	stopErr  error
	stopOnce sync.Once
}

// ErrNotInstalled is wrapped by the errors that report a missing sshd or
// ssh-agent binary.
var ErrNotInstalled = errors.New("not installed")

// Host is one simulated host.
type Host struct {
	// Addr is the host's loopback IPv4 address, e.g. "127.0.10.1".
	Addr string
	// Port is the port sshd listens on.
	Port int
	// PID is the process ID of the host's listening sshd.
	PID int
	// HostKeys maps a key type ("ed25519", ...) to the host's public key
	// in authorized_keys form ("ssh-ed25519 AAAA...").
	HostKeys map[string]string
	// LogFile is the path of the host's sshd log (-E). It survives
	// RotateHostKey.
	LogFile string
	// dir holds the host's config and keys.
	dir string
}

// HostPort returns "addr:port", the address to dial.
func (h Host) HostPort() string { return net.JoinHostPort(h.Addr, strconv.Itoa(h.Port)) }

// proc is one running sshd process. done is closed once it has been
// reaped; err is then its exit status.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// SSHDPath returns the absolute path of the OpenSSH sshd binary: $PATH
// first, then /usr/sbin and /usr/local/sbin (often not in a user's
// $PATH). sshd must be run by absolute path because it re-executes itself.
func SSHDPath() (string, error) {
	if p, err := exec.LookPath("sshd"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: sshd not found in $PATH, /usr/sbin or /usr/local/sbin; install OpenSSH's server (apt-get install openssh-server)", ErrNotInstalled)
}

// Start generates keys and configs for o.N hosts and starts one sshd per
// host, in parallel, returning once every sshd listens. On error, every
// process already started is stopped again. ctx bounds start-up only
// (default 60 s when ctx has no deadline); the farm runs until Stop.
func Start(ctx context.Context, o Options) (*Farm, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	sshd, err := SSHDPath()
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	extraDefaults, err := versionDefaults(ctx, sshd)
	if err != nil {
		return nil, err
	}
	if err := ensurePrivsepDir(); err != nil {
		return nil, err
	}

	f := &Farm{sshd: sshd, opts: o, Dir: o.Dir}
	if f.Dir == "" {
		if f.Dir, err = os.MkdirTemp("", "sshdfarm-"); err != nil {
			return nil, fmt.Errorf("create farm directory: %w", err)
		}
		f.ownDir = true
	} else if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create farm directory: %w", err)
	}
	if f.Dir, err = filepath.Abs(f.Dir); err != nil {
		return nil, err
	}
	fail := func(err error) (*Farm, error) {
		f.Stop()
		return nil, err
	}
	if f.User, err = currentUser(); err != nil {
		return fail(err)
	}
	if err := f.writeClientKey(); err != nil {
		return fail(err)
	}

	autoPort := o.Port == 0
	for attempt := 1; ; attempt++ {
		port := o.Port
		if autoPort {
			if port, err = freePort(hostAddr(o.Subnet, 0)); err != nil {
				return fail(err)
			}
		}
		err = f.startAll(ctx, port, extraDefaults)
		if err == nil {
			break
		}
		f.killAll()
		if !autoPort || attempt == 3 || !errors.Is(err, errAddrInUse) || ctx.Err() != nil {
			return fail(err)
		}
	}
	f.KnownHosts = filepath.Join(f.Dir, "known_hosts")
	if err := f.WriteKnownHosts(f.KnownHosts, false); err != nil {
		return fail(err)
	}
	return f, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.N < 1 {
		return o, fmt.Errorf("sshdfarm: N is %d; ask for at least one host", o.N)
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	o.Subnet = strings.TrimSuffix(o.Subnet, ".")
	oct := strings.Split(o.Subnet, ".")
	if len(oct) != 3 || oct[0] != "127" {
		return o, fmt.Errorf("sshdfarm: Subnet %q is not three octets of 127.0.0.0/8 such as %q", o.Subnet, DefaultSubnet)
	}
	for _, s := range oct[1:] {
		if v, err := strconv.Atoi(s); err != nil || v < 0 || v > 255 {
			return o, fmt.Errorf("sshdfarm: Subnet %q has a bad octet %q", o.Subnet, s)
		}
	}
	third, _ := strconv.Atoi(oct[2])
	if last := third + (o.N-1)/254; last > 255 {
		return o, fmt.Errorf("sshdfarm: %d hosts from %s.1 run past 127.%s.255.254; use a lower Subnet", o.N, o.Subnet, oct[1])
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("sshdfarm: Port %d is out of range", o.Port)
	}
	if len(o.HostKeyTypes) == 0 {
		o.HostKeyTypes = []string{DefaultHostKeyType}
	}
	for _, t := range o.HostKeyTypes {
		if _, ok := keyGenerators[t]; !ok {
			return o, fmt.Errorf("sshdfarm: unknown host key type %q; use ed25519, rsa or ecdsa", t)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(o.HostKeyTypes)))) != len(o.HostKeyTypes) {
		return o, fmt.Errorf("sshdfarm: HostKeyTypes %v lists a type twice", o.HostKeyTypes)
	}
	return o, nil
}

// hostAddr returns the address of host i (0-based) under subnet "a.b.c":
// a.b.c.1 .. a.b.c.254, then a.b.(c+1).1 and so on, skipping .0 and .255.
func hostAddr(subnet string, i int) string {
	oct := strings.Split(subnet, ".")
	third, _ := strconv.Atoi(oct[2])
	return fmt.Sprintf("%s.%s.%d.%d", oct[0], oct[1], third+i/254, i%254+1)
}

func currentUser() (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("look up the current user, whom the farm's hosts accept: %w", err)
	}
	return u.Username, nil
}

// ensurePrivsepDir creates sshd's privilege separation directory when
// running as root, since sshd refuses to start without it and packages
// only create it in their init scripts.
func ensurePrivsepDir() error {
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := os.Stat("/run/sshd"); err == nil {
		return nil
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create sshd's privilege separation directory /run/sshd: %w", err)
	}
	return nil
}

var sshdVersionRE = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// versionDefaults returns sshd_config lines that depend on the sshd
// version. OpenSSH 9.8 added per-source penalties, which would throttle a
// farm whose every client connects from 127.0.0.1 after a few refused
// logins (tests refuse logins on purpose); older versions reject the
// keyword, so it is only written when supported.
func versionDefaults(ctx context.Context, sshd string) ([]string, error) {
	// "sshd -V" prints the version and exits non-zero on old versions;
	// the exit status carries no information.
	out, _ := exec.CommandContext(ctx, sshd, "-V").CombinedOutput()
	m := sshdVersionRE.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("%s -V printed no OpenSSH version (%q); sshdfarm needs OpenSSH's sshd", sshd, bytes.TrimSpace(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major > 9 || major == 9 && minor >= 8 {
		return []string{"PerSourcePenalties no"}, nil
	}
	return nil, nil
}

// freePort returns a TCP port that is free on addr right now.
func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp4", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (f *Farm) writeClientKey() error {
	k, err := generateKey("ed25519", "sshdfarm-client")
	if err != nil {
		return err
	}
	f.ClientKey = filepath.Join(f.Dir, "client_ed25519")
	f.ClientPub = f.ClientKey + ".pub"
	f.ClientSigner = k.signer
	if err := writeFile(f.ClientKey, k.private, 0o600); err != nil {
		return err
	}
	if err := writeFile(f.ClientPub, []byte(k.authorized+"\n"), 0o644); err != nil {
		return err
	}
	return writeFile(f.authorizedKeys(), []byte(k.authorized+"\n"), 0o600)
}

func (f *Farm) authorizedKeys() string { return filepath.Join(f.Dir, "authorized_keys") }

// startAll writes keys and a config for every host on port, starts all
// sshds and waits until each listens.
func (f *Farm) startAll(ctx context.Context, port int, extraDefaults []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.opts.N
	f.Hosts = make([]Host, n)
	f.procs = make([]*proc, n)
	for i := range f.Hosts {
		f.Hosts[i] = Host{
			Addr: hostAddr(f.opts.Subnet, i),
			Port: port,
			dir:  filepath.Join(f.Dir, fmt.Sprintf("host%03d", i+1)),
		}
		f.Hosts[i].LogFile = filepath.Join(f.Hosts[i].dir, "sshd.log")
	}
	if err := parallel(ctx, n, func(i int) error {
		return f.prepareHost(i, extraDefaults)
	}); err != nil {
		return err
	}
	offsets := make([]int64, n)
	for i := range f.Hosts {
		offsets[i] = fileSize(f.Hosts[i].LogFile)
		p, err := f.spawn(i)
		if err != nil {
			return err
		}
		f.procs[i] = p
		f.Hosts[i].PID = p.cmd.Process.Pid
	}
	return f.waitListening(ctx, offsets)
}

// prepareHost writes host i's keys and sshd_config.
func (f *Farm) prepareHost(i int, extraDefaults []string) error {
	h := &f.Hosts[i]
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		return err
	}
	keys, err := f.writeHostKeys(h)
	if err != nil {
		return err
	}
	cfg := sshdConfig(h, keys, f.authorizedKeys(), f.opts.Extra, extraDefaults)
	return writeFile(filepath.Join(h.dir, "sshd_config"), []byte(cfg), 0o600)
}

// writeHostKeys generates h's host keys, writes them to h.dir, sets
// h.HostKeys and returns the private key paths in Options order.
func (f *Farm) writeHostKeys(h *Host) ([]string, error) {
	h.HostKeys = make(map[string]string, len(f.opts.HostKeyTypes))
	var paths []string
	for _, t := range f.opts.HostKeyTypes {
		k, err := generateKey(t, "sshdfarm-"+h.Addr)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(h.dir, "ssh_host_"+t+"_key")
		if err := writeFile(p, k.private, 0o600); err != nil {
			return nil, err
		}
		h.HostKeys[t] = k.authorized
		paths = append(paths, p)
	}
	return paths, nil
}

// sshdConfig renders a host's sshd_config. Extra lines before the first
// Match go first so that they win over the farm's settings.
func sshdConfig(h *Host, hostKeys []string, authorizedKeys string, extra, extraDefaults []string) string {
	head, tail := extra, []string(nil)
	for i, l := range extra {
		if fields := strings.Fields(l); len(fields) > 0 && strings.EqualFold(fields[0], "Match") {
			head, tail = extra[:i], extra[i:]
			break
		}
	}
	var b strings.Builder
	b.WriteString("# Written by sshdfarm for one loopback test host.\n")
	for _, l := range head {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "ListenAddress %s\n", h.HostPort())
	for _, k := range hostKeys {
		fmt.Fprintf(&b, "HostKey %q\n", k)
	}
	fmt.Fprintf(&b, "PidFile %q\n", filepath.Join(h.dir, "sshd.pid"))
	fmt.Fprintf(&b, "AuthorizedKeysFile %q\n", authorizedKeys)
	for _, l := range append(extraDefaults,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin yes",
		"UsePAM no",
		"UseDNS no",
		"StrictModes no",
		"MaxStartups 2000",
		"MaxSessions 100",
		"LogLevel INFO",
		// root's shell start-up files on this project's machines run
		// slow code for non-interactive shells unless SHLVL is set.
		"SetEnv SHLVL=1",
		"PrintMotd no",
		"Subsystem sftp internal-sftp",
	) {
		b.WriteString(l + "\n")
	}
	for _, l := range tail {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// spawn starts host i's sshd in the foreground (-D) with its log in
// LogFile (-E) and a goroutine that reaps it.
func (f *Farm) spawn(i int) (*proc, error) {
	h := f.Hosts[i]
	argv := []string{f.sshd, "-D", "-E", h.LogFile, "-f", filepath.Join(h.dir, "sshd_config")}
	if f.opts.HostsFile != "" {
		// unshare and sh exec in turn, so the PID stays the sshd's.
		argv = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/hosts && exec "$@"`, f.opts.HostsFile}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd for %s: %w", h.HostPort(), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

var errAddrInUse = errors.New("address already in use")

// waitListening polls the hosts' logs, from offsets on, for sshd's
// "Server listening" line, and fails as soon as an sshd exits.
func (f *Farm) waitListening(ctx context.Context, offsets []int64) error {
	pending := make(map[int]bool, len(offsets))
	for i := range offsets {
		if f.procs[i] != nil {
			pending[i] = true
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		for i := range pending {
			h := f.Hosts[i]
			log := readFrom(h.LogFile, offsets[i])
			if bytes.Contains(log, []byte("Server listening on ")) {
				delete(pending, i)
				continue
			}
			select {
			case <-f.procs[i].done:
				err := fmt.Errorf("sshd for %s exited during start-up (%v): %s (log %s, config %s)",
					h.HostPort(), f.procs[i].err, lastLines(log, 5), h.LogFile, filepath.Join(h.dir, "sshd_config"))
				if bytes.Contains(log, []byte("Address already in use")) {
					err = fmt.Errorf("%w: %w", errAddrInUse, err)
				}
				return err
			default:
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d of %d sshds to listen: %w", len(pending), len(offsets), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Stop stops every sshd of the farm and the sessions they serve, waits
// for them to exit, and removes Dir if Start created it. It may be called
// more than once; later calls return the first call's result.
func (f *Farm) Stop() error {
	f.stopOnce.Do(func() {
		f.mu.Lock()
		f.stopped = true
		err := f.killAll()
		f.mu.Unlock()
		if f.ownDir {
			if rmErr := os.RemoveAll(f.Dir); rmErr != nil {
				err = errors.Join(err, rmErr)
			}
		}
		f.stopErr = err
	})
	return f.stopErr
}

// killAll terminates every recorded sshd with its session children.
// f.mu must be held.
func (f *Farm) killAll() error {
	var live []*proc
	for i, p := range f.procs {
		if p != nil {
			live = append(live, p)
			f.procs[i] = nil
		}
	}
	return terminate(live)
}

// terminate sends SIGTERM to each process and to its direct children
// (sshd's per-connection processes, which leave its process group), then
// SIGKILL to those still running after stopGrace, and waits for them.
func terminate(procs []*proc) error {
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.cmd.Process.Pid
	}
	children := childrenOf(pids)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGTERM)
	}
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(stopGrace)
	var errs []error
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		var exit *exec.ExitError
		if p.err != nil && !errors.As(p.err, &exit) {
			errs = append(errs, fmt.Errorf("wait for sshd pid %d: %w", p.cmd.Process.Pid, p.err))
		}
	}
	// Children are no longer ours to reap once their parent is gone; a
	// straggler that ignored SIGTERM gets SIGKILL if it still exists.
	for _, c := range children {
		if syscall.Kill(c, 0) == nil {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
	}
	return errors.Join(errs...)
}

// Connections returns the number of connection processes the farm's
// sshds are running now: one per open client connection (or one still
// being torn down). It lets a benchmark wait for the server side to go
// idle between runs and a test check that a client closed every
// connection. It is always 0 where /proc is unavailable.
func (f *Farm) Connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var pids []int
	for _, p := range f.procs {
		if p != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return len(childrenOf(pids))
}

var acceptedRE = regexp.MustCompile(`(?m)^Accepted [a-z0-9-]+ for `)

// Accepted returns the number of successful logins ("Accepted publickey
// for ...") in all host logs since Start: the server-side count of SSH
// handshakes that completed authentication. Take the difference of two
// calls to count the logins of one run.
func (f *Farm) Accepted() (int, error) {
	f.mu.Lock()
	logs := make([]string, len(f.Hosts))
	for i, h := range f.Hosts {
		logs[i] = h.LogFile
	}
	f.mu.Unlock()
	n := 0
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			return 0, fmt.Errorf("count accepted logins: %w", err)
		}
		n += len(acceptedRE.FindAllIndex(b, -1))
	}
	return n, nil
}

// WriteKnownHosts writes a known_hosts file at path (atomically, mode
// 0600) with a "[addr]:port type key" line for every host and key type
// in Options order; hashed writes the host field in OpenSSH's hashed
// form, |1|salt|hash, with a fresh salt per line.
func (f *Farm) WriteKnownHosts(path string, hashed bool) error {
	f.mu.Lock()
	hosts := slices.Clone(f.Hosts)
	f.mu.Unlock()
	var b strings.Builder
	for _, h := range hosts {
		addr := knownhosts.Normalize(h.HostPort())
		for _, t := range f.opts.HostKeyTypes {
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKeys[t]))
			if err != nil {
				return fmt.Errorf("host %s key %s: %w", h.HostPort(), t, err)
			}
			if hashed {
				b.WriteString(knownhosts.HashHostname(addr) + " " + h.HostKeys[t] + "\n")
			} else {
				b.WriteString(knownhosts.Line([]string{addr}, pub) + "\n")
			}
		}
	}
	return writeFileAtomic(path, []byte(b.String()), 0o600)
}

// RotateHostKey gives host i new host keys of the same types and
// restarts its sshd (ending its open sessions), returning once it
// listens again. Farm.KnownHosts
// keeps the old keys, so a strict client now sees a mismatch for host i.
func (f *Farm) RotateHostKey(ctx context.Context, i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return errors.New("sshdfarm: RotateHostKey on a stopped farm")
	}
	if i < 0 || i >= len(f.Hosts) {
		return fmt.Errorf("sshdfarm: RotateHostKey(%d) with %d hosts", i, len(f.Hosts))
	}
	if err := terminate([]*proc{f.procs[i]}); err != nil {
		return err
	}
	f.procs[i] = nil
	h := f.Hosts[i]
	if _, err := f.writeHostKeys(&h); err != nil {
		return err
	}
	h.PID = 0
	f.Hosts[i] = h // publish the new keys even if the restart fails
	offsets := make([]int64, len(f.Hosts))
	offsets[i] = fileSize(h.LogFile)
	p, err := f.spawn(i)
	if err != nil {
		return err
	}
	f.procs[i] = p
	f.Hosts[i].PID = p.cmd.Process.Pid
	return f.waitListening(ctx, offsets)
}

// parallel runs fn(0..n-1) on up to workers() at a time and returns the
// first error.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	errs := fanout.Run(ctx, n, workers(), func(_ context.Context, i int) error { return fn(i) })
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the contents of path from offset on (nil if absent).
func readFrom(path string, offset int64) []byte {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, 0); err != nil {
		return nil
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(fh)
	return b.Bytes()
}

// lastLines returns the last n lines of b joined by "; ".
func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(empty log)"
	}
	return strings.Join(lines, "; ")
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode) // WriteFile keeps an existing file's mode
}

// writeFileAtomic writes b to a temporary file next to path and renames
// it into place, so readers never see a half-written file.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
