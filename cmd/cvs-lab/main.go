// Command cvs-lab runs cvs's multi-host test lab on this machine: hosts that
// are containers with their own IP, sshd and dockerd, a registry, and a
// cluster file for cvs. Each subcommand is one call into package lab.
//
//	cvs-lab up [N] [--slurm]            bring up N hosts (default 3), with Slurm
//	cvs-lab down [--purge]              remove the lab (--purge: caches too)
//	cvs-lab status [--json]             show the lab's processes and hosts
//	cvs-lab env                         print shell exports (CVS_CLUSTER=...)
//	cvs-lab ssh HOST -- CMD...          run CMD on HOST over SSH (lab key)
//	cvs-lab exec HOST -- CMD...         run CMD on HOST through the lab daemon
//	cvs-lab fault KIND [ARGS]           inject or undo a fault (see usage)
//
// The lab lives in $CVS_LAB_DIR (default /var/tmp/cvs-lab).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/cvs-tool/cvs/lab"
	"github.com/cvs-tool/cvs/shell"
)

const usage = `usage: cvs-lab COMMAND [ARGS]

  up [N] [--slurm]          bring up a lab of N hosts (default 3), recreating
                            any lab already up; prints the cluster file path.
                            --slurm: munged and slurmd on every host, slurmctld
                            in a container (slurmctl), munged on this machine;
                            then eval "$(cvs-lab env)" and srun -N N hostname
  down [--purge]            remove everything the lab created; --purge also
                            removes the image caches
  status [--json]           show the lab daemon, registry and hosts
  env                       print shell exports: eval "$(cvs-lab env)"
                            (a Slurm lab adds SLURM_CONF)
  ssh HOST -- CMD...        run CMD on HOST over SSH as root with the lab key
                            and strict host key checking; one CMD argument is
                            a shell command line, several are an argv
  exec HOST -- CMD...       run argv CMD on HOST through the lab's own daemon
                            (works while the host's sshd is down)
  fault KIND [ARGS]         inject a fault, or undo one:
      sshd-stop HOST | sshd-start HOST
      dockerd-stop HOST | dockerd-start HOST
      host-pause HOST | host-unpause HOST
                            freeze the host: SSH connects, then hangs
      slurmd-stop HOST | slurmd-start HOST
                            (Slurm lab) stop the host's slurmd; start waits
                            until the node is idle again
      hostkey-rotate HOST   new host keys; strict checking must then refuse
      known-hosts-refresh   rewrite known_hosts from the hosts' current keys
      retag HOST REF OTHER_REF
                            on HOST only, make REF name OTHER_REF's image
      registry-down | registry-up
      registry-slow [RATE]  throttle registry answers (tc rate, default 1mbit)

HOST is a name (host1), an address (172.29.0.11) or a container name.
Environment: CVS_LAB_DIR (default /var/tmp/cvs-lab), CVS_LAB_SUBNET (default
172.29.0.0/24), CVS_LAB_SUITE, CVS_LAB_MIRROR.
`

// exitError carries a command's exit code out of run; what went wrong has
// been printed already (the remote command's own stderr).
type exitError int

func (e exitError) Error() string { return "exit " + strconv.Itoa(int(e)) }

// usageErr is a mistake in the command line: main prints it and exits 2,
// like flag errors.
type usageErr string

func (e usageErr) Error() string { return string(e) + "\n(cvs-lab help for usage)" }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var code exitError
	var usage usageErr
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "cvs-lab:", usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "cvs-lab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cfg, err := lab.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Log = stderr
	cmd, args := args[0], args[1:]
	switch cmd {
	case "up":
		fs := newFlags("up", stderr)
		slurm := fs.Bool("slurm", false, "add Slurm: munged and slurmd on every host, slurmctld in a container, munged here")
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		n := lab.DefaultHosts
		if len(pos) > 1 {
			return usageError("up takes one argument, the number of hosts")
		}
		if len(pos) == 1 {
			if n, err = strconv.Atoi(pos[0]); err != nil {
				return usageError("up: %q is not a number of hosts", pos[0])
			}
		}
		l, err := lab.New(cfg)
		if err != nil {
			return err
		}
		if err := l.UpWith(ctx, n, lab.UpOptions{Slurm: *slurm}); err != nil {
			return err
		}
		fmt.Fprintln(stdout, l.ClusterFile())
		return nil

	case "down":
		fs := newFlags("down", stderr)
		purge := fs.Bool("purge", false, "also remove the image caches and the lab directory")
		if err := fs.Parse(args); err != nil {
			return err
		}
		l, err := lab.New(cfg)
		if err != nil {
			return err
		}
		return l.Down(ctx, lab.DownOptions{Purge: *purge})

	case "status":
		fs := newFlags("status", stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		if err := fs.Parse(args); err != nil {
			return err
		}
		l, err := lab.New(cfg)
		if err != nil {
			return err
		}
		st, err := l.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		st.Print(stdout)
		return nil

	case "env":
		l, err := lab.Open(ctx, cfg)
		if err != nil {
			return err
		}
		for _, kv := range l.Env() {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(stdout, "export %s=%s\n", k, shell.Quote(v))
		}
		return nil

	case "ssh", "exec":
		host, argv, err := hostAndCommand(cmd, args)
		if err != nil {
			return err
		}
		l, err := lab.Open(ctx, cfg)
		if err != nil {
			return err
		}
		var res lab.ExecResult
		switch {
		case cmd == "exec":
			res, err = l.HostExec(ctx, host, argv...)
		case len(argv) == 1:
			res, err = l.SSHScript(ctx, host, argv[0])
		default:
			res, err = l.SSH(ctx, host, argv...)
		}
		io.WriteString(stdout, res.Stdout)
		io.WriteString(stderr, res.Stderr)
		var ee *lab.ExitError
		if errors.As(err, &ee) {
			return exitError(ee.ExitCode)
		}
		return err

	case "fault":
		return fault(ctx, cfg, args, stdout)
	}
	return usageError("unknown command %q", cmd)
}

func fault(ctx context.Context, cfg lab.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError("fault: which one?")
	}
	kind, args := args[0], args[1:]
	want := func(n int, names string) error {
		if len(args) != n {
			return usageError("fault %s takes %s", kind, names)
		}
		return nil
	}
	l, err := lab.Open(ctx, cfg)
	if err != nil {
		return err
	}
	hostFaults := map[string]func(context.Context, string) error{
		"sshd-stop":     l.StopSSHD,
		"sshd-start":    l.StartSSHD,
		"dockerd-stop":  l.StopDockerd,
		"dockerd-start": l.StartDockerd,
		"host-pause":    l.PauseHost,
		"host-unpause":  l.UnpauseHost,
		"slurmd-stop":   l.StopSlurmd,
		"slurmd-start":  l.StartSlurmd,
	}
	if f, ok := hostFaults[kind]; ok {
		if err := want(1, "HOST"); err != nil {
			return err
		}
		return f(ctx, args[0])
	}
	switch kind {
	case "hostkey-rotate":
		if err := want(1, "HOST"); err != nil {
			return err
		}
		keys, err := l.RotateHostKey(ctx, args[0])
		for _, k := range keys {
			fmt.Fprintln(stdout, k)
		}
		return err
	case "known-hosts-refresh":
		if err := want(0, "no arguments"); err != nil {
			return err
		}
		return l.RefreshKnownHosts(ctx)
	case "retag":
		if err := want(3, "HOST REF OTHER_REF"); err != nil {
			return err
		}
		return l.Retag(ctx, args[0], args[1], args[2])
	case "registry-down":
		return l.StopRegistry(ctx)
	case "registry-up":
		return l.StartRegistry(ctx)
	case "registry-slow":
		if len(args) > 1 {
			return usageError("fault registry-slow takes at most a RATE")
		}
		rate := ""
		if len(args) == 1 {
			rate = args[0]
		}
		return l.SlowRegistry(ctx, rate)
	}
	return usageError("unknown fault %q", kind)
}

// hostAndCommand splits "HOST -- CMD..." (the -- is optional).
func hostAndCommand(cmd string, args []string) (string, []string, error) {
	if len(args) < 2 {
		return "", nil, usageError("%s HOST -- CMD...", cmd)
	}
	host, rest := args[0], args[1:]
	if rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return "", nil, usageError("%s %s: no command", cmd, host)
	}
	return host, rest, nil
}

// parseInterspersed parses flags before and after positional arguments
// (cvs-lab up 3 --slurm as well as cvs-lab up --slurm 3) and returns the
// positional ones; everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// Parse consumed a "--" terminator: the rest is positional.
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cvs-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func usageError(format string, args ...any) error {
	return usageErr(fmt.Sprintf(format, args...))
}
