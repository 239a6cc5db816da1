package sshd

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/report"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// Where the key material and sshd's files live inside a container. They
// are cvs's own files: the image's sshd configuration and root's
// authorized_keys are left alone, and only the cluster key can log in to
// the sshd cvs starts.
const (
	containerDir = "/etc/cvs/ssh"
	pidFile      = "/run/cvs-sshd.pid"
	logFile      = "/run/cvs-sshd.log"
)

// Outcome says what Ensure did in one container.
type Outcome struct {
	// AlreadyListening is true when something already listened on the
	// port inside the container, so Ensure changed nothing (the attach of
	// a persistent container). Otherwise Ensure installed the key
	// material and started sshd, and verified that it listens.
	AlreadyListening bool
	// Restarted is true when cvs's sshd ran with other keys or another
	// configuration than the cluster's current ones, and was started again
	// with them.
	Restarted bool
}

func (o Outcome) String() string {
	switch {
	case o.AlreadyListening:
		return "already listening"
	case o.Restarted:
		return "restarted with the cluster's keys"
	}
	return "started"
}

// How long Ensure waits for a started sshd to listen, and how often it
// looks. Variables so that tests can shorten them.
var (
	verifyTimeout = 5 * time.Second
	verifyEvery   = 200 * time.Millisecond
)

// Ensure makes sure an sshd listens on port inside container on the host
// h (named host in errors), with the docker commands of d.
//
// When a socket already listens on port inside the container, Ensure
// returns at once with AlreadyListening set, having run only that check:
// it is the listening socket that is checked, never a process-name
// pattern that could match the check itself. Otherwise Ensure installs
// the cluster's key material (the client key as root's ssh identity, its
// public half as the only key sshd accepts, the host key, a known_hosts
// line trusting that host key on port, and a client configuration so that
// `ssh PEER` in the container uses port, the cluster key and strict host
// key checking), writes a dedicated sshd configuration (no passwords,
// root by key only, no PAM), starts sshd and waits until it listens.
//
// The private keys travel as the install script's standard input, never
// in a command line: over the Engine API's stream, or with the docker CLI
// over SFTP into a fresh 0700 folder on the host, removed whatever
// happens, and from there on docker exec's stdin. Failures are an *Error
// saying what to do.
func Ensure(ctx context.Context, e docker.Engine, host string, container string, port int, keys Keys) (Outcome, error) {
	fail := func(op, msg, output string, err error) (Outcome, error) {
		return Outcome{}, &Error{Host: host, Container: container, Op: op, Msg: msg, Output: output, Err: err}
	}
	switch {
	case !keys.valid():
		return fail("setup", "no cluster keys (get them from sshd.LoadOrCreate)", "", nil)
	case port < 1 || port > 65535:
		return fail("setup", fmt.Sprintf("port %d is out of range", port), "", nil)
	case container == "" || strings.HasPrefix(container, "-"):
		return fail("setup", fmt.Sprintf("invalid container name %q", container), "", nil)
	}
	checkOp := fmt.Sprintf("checking port %d", port)
	st, err := portState(ctx, e, container, port)
	if err != nil {
		return fail(checkOp, "", "", err)
	}
	restart := false
	switch {
	case st.listening && st.ours && st.installed == installed(port, keys):
		return Outcome{AlreadyListening: true}, nil
	case st.listening && st.ours:
		// The cluster's key folder changed (the cluster file reached
		// through another path, the folder deleted), or cvs writes another
		// configuration now: peers would fail against this sshd.
		restart = true
	case st.listening:
		// With --network host every container of the host shares the
		// port: the socket may be another container's sshd, which cannot
		// let this cluster's peers in. Never take it for ours.
		return fail(checkOp, fmt.Sprintf("port %d is already in use in the container's network (another container with --network host, or a service of the host?), and it is not the sshd cvs started in %s; free the port or set container.sshd_port to a free one", port, container), "", nil)
	}

	script, err := installScript(port, keys)
	if err != nil {
		return fail("setup", "", "", err)
	}
	// -u 0: sshd and its files need root, whatever USER the image names.
	// The script (it holds the private keys) is the command's input.
	res, err := e.Exec(ctx, container, docker.Root, []string{"sh", "-s"}, docker.ExecIO{Stdin: script, Name: "the sshd install script"})
	if err != nil {
		return installFailed(host, container, port, res, err)
	}

	up, err := waitListening(ctx, e, container, port)
	if err != nil {
		return fail(fmt.Sprintf("verifying that sshd listens on port %d", port), "", "", err)
	}
	if !up {
		log, _ := e.Exec(ctx, container, docker.Root, []string{"cat", logFile}, docker.ExecIO{})
		return fail("starting sshd",
			fmt.Sprintf("sshd was started but nothing listens on port %d after %s; its log (%s in the container) follows", port, verifyTimeout, logFile),
			report.Tail(string(log.Stdout), tailLines), nil)
	}
	return Outcome{Restarted: restart}, nil
}

// Files are where cvs's sshd keeps its pid and its key and configuration
// files in a container, for probes that read them from outside.
const (
	PidFile      = pidFile
	ContainerDir = containerDir
)

// UpToDate reports whether an sshd a probe saw (listening on port, the one
// cvs started, with files as it was given) is what Ensure would leave:
// then Ensure has nothing to do and need not be called.
func UpToDate(port int, keys Keys, listening, own bool, files string) bool {
	// Trailing newlines are the probe's framing, not the files'.
	return listening && own && keys.valid() && strings.TrimRight(files, "\n") == strings.TrimRight(installed(port, keys), "\n")
}

// installed is what the port check reads back of the files Ensure installs
// (the authorized key, the peers' known_hosts line, sshd's configuration)
// when they are the cluster's current ones.
func installed(port int, keys Keys) string {
	return keys.AuthorizedKey() + "\n" + keys.KnownHostsLine(port) + "\n" + sshdConfig(port)
}

// installFailed turns the install script's exit status into an *Error
// that says what to do.
func installFailed(host, container string, port int, res transport.Result, err error) (Outcome, error) {
	e := &Error{Host: host, Container: container, Op: "installing the key material and starting sshd", Output: report.Tail(string(res.Stderr), tailLines), Err: err}
	var ee *transport.ExitError
	if errors.As(err, &ee) && ee.Signal == "" {
		switch ee.Code {
		case 3:
			e.Op, e.Output = "starting sshd", ""
			e.Msg = "sshd is not installed in the image; the setup script should install openssh-server (the default one does; check container.setup_script), or bake it into the image"
		case 4:
			e.Op = "starting sshd"
			e.Msg = "sshd refused the configuration cvs wrote (is the image's OpenSSH very old?); sshd said"
		case 5:
			e.Op = "starting sshd"
			e.Msg = fmt.Sprintf("sshd failed to start on port %d; sshd said", port)
		}
	}
	return Outcome{}, e
}

// ownMarker is printed by the port check when cvs's own sshd (its pid
// file names a live process) runs in the container; keysMarker precedes the
// installed key and configuration files.
const (
	ownMarker  = "@@cvs-sshd-running@@"
	keysMarker = "@@cvs-sshd-files@@"
)

type portStatus struct {
	listening bool   // a socket listens on the port in the container's network
	ours      bool   // cvs's sshd runs in this container
	installed string // its authorized_keys, known_hosts and sshd_config
}

// portState reads the container's /proc/net/tcp and tcp6 and whether cvs's
// sshd runs in it, in one docker exec as root: whatever USER the image
// names, kill -0 on root's sshd must not fail with EPERM.
func portState(ctx context.Context, e docker.Engine, container string, port int) (portStatus, error) {
	check := "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; " +
		"p=$(cat " + pidFile + " 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo " + ownMarker + "; " +
		"echo " + keysMarker + "; cd " + containerDir + " 2>/dev/null && cat authorized_keys known_hosts sshd_config 2>/dev/null; true"
	res, err := e.Exec(ctx, container, docker.Root, []string{"sh", "-c", check}, docker.ExecIO{})
	out := string(res.Stdout)
	// The header line proves the tables were read.
	if err != nil {
		return portStatus{}, err
	}
	if !strings.Contains(out, "local_address") {
		return portStatus{}, fmt.Errorf("the container's /proc/net/tcp could not be read: %q", report.Tail(out, 3))
	}
	tables, files, _ := strings.Cut(out, keysMarker+"\n")
	return portStatus{listening: docker.Listening(tables, port), ours: strings.Contains(tables, ownMarker), installed: files}, nil
}

// waitListening polls until cvs's sshd runs and a socket listens on port,
// or verifyTimeout passes.
func waitListening(ctx context.Context, e docker.Engine, container string, port int) (bool, error) {
	deadline := time.Now().Add(verifyTimeout)
	for {
		st, err := portState(ctx, e, container, port)
		up := st.listening && st.ours
		if err != nil || up || time.Now().After(deadline) {
			return up, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(verifyEvery):
		}
	}
}

//go:embed install.sh
var installBody string

// heredocEnd closes each file in the install script. No generated file
// contains it as a line, which installScript checks.
const heredocEnd = "CVS_END_OF_FILE"

// installScript returns the script that runs in the container: a header
// with the settings and every file's content, then install.sh. It holds
// the private keys, so it travels only over SFTP and stdin.
func installScript(port int, keys Keys) ([]byte, error) {
	files := []struct {
		name    string
		content string
	}{
		{"ssh_host_ed25519_key", string(keys.hostPEM)},
		{"id_ed25519", string(keys.clientPEM)},
		{"id_ed25519.pub", keys.AuthorizedKey() + "\n"},
		{"authorized_keys", keys.AuthorizedKey() + "\n"},
		{"known_hosts", keys.KnownHostsLine(port) + "\n"},
		{"sshd_config", sshdConfig(port)},
		{"ssh_config", clientConfig(port)},
	}
	var b bytes.Buffer
	b.WriteString("# Generated by cvs: sets up the in-container sshd. Read from stdin, never stored.\n")
	b.WriteString("set -eu\numask 077\n")
	fmt.Fprintf(&b, "port=%d\ndir=%s\npidfile=%s\nlog=%s\n", port, shell.Quote(containerDir), shell.Quote(pidFile), shell.Quote(logFile))
	b.WriteString("write_files() {\n")
	for _, f := range files {
		if strings.Contains("\n"+f.content, "\n"+heredocEnd+"\n") || !strings.HasSuffix(f.content, "\n") {
			return nil, fmt.Errorf("internal error: %s cannot be written as a here-document", f.name)
		}
		fmt.Fprintf(&b, "cat >\"$dir/%s\" <<'%s'\n%s%s\n", f.name, heredocEnd, f.content, heredocEnd)
	}
	b.WriteString("}\n")
	b.WriteString(installBody)
	return b.Bytes(), nil
}

// sshdConfig is the configuration of the sshd cvs starts. It reads no
// file of the image's, so the image's own sshd setup does not matter.
func sshdConfig(port int) string {
	return `# Written by cvs: the sshd the cluster's containers reach each other
# through (MPI launchers). Only the cluster key can log in.
Port ` + strconv.Itoa(port) + `
HostKey ` + containerDir + `/ssh_host_ed25519_key
AuthorizedKeysFile ` + containerDir + `/authorized_keys
PidFile ` + pidFile + `
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
UsePAM no
PrintMotd no
# A launcher starting many ranks opens many connections at once; OpenSSH's
# default (10:30:100) would drop some of them.
MaxStartups 200:30:400
Subsystem sftp internal-sftp
# Peers log in to run commands; nothing is forwarded through this sshd.
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
GatewayPorts no
`
}

// clientConfig is included at the top of root's ~/.ssh/config in the
// container. It applies to every destination: ssh from inside a cluster
// container is for reaching its peers.
func clientConfig(port int) string {
	return `# Written by cvs: ssh from this container reaches the other containers
# of the cluster, on their sshd port, with the cluster key, and trusts
# only the cluster's host key.
Host *
	Port ` + strconv.Itoa(port) + `
	IdentityFile ` + containerDir + `/id_ed25519
	IdentitiesOnly yes
	UserKnownHostsFile ` + containerDir + `/known_hosts
	StrictHostKeyChecking yes
	CheckHostIP no
	UpdateHostKeys no
	BatchMode yes
`
}

// tailLines is how much of sshd's output an Error carries.
const tailLines = 20

// Error is a failure to get sshd listening in one container.
type Error struct {
	Host      string
	Container string
	// Op is what cvs was doing, e.g. "starting sshd".
	Op string
	// Msg says what went wrong and what to do, when cvs knows; else Err
	// says it.
	Msg string
	// Output is the tail of sshd's own complaints, when there are any.
	Output string
	// Err is the cause, if any: a transport or upload error.
	Err error
}

func (e *Error) Error() string {
	what := e.Msg
	if what == "" {
		what = transport.Outcome(e.Err)
	}
	msg := fmt.Sprintf("sshd in container %s: %s: %s", e.Container, e.Op, what)
	out := e.Output
	var ee *transport.ExitError
	if out == "" && e.Msg == "" && errors.As(e.Err, &ee) {
		out = ee.StderrTail
	}
	if out != "" {
		msg += "\n" + report.Indent(out, "  | ")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }
