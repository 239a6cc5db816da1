package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/charmbracelet/log"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/redact"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// app is one invocation: global flags, output streams, the loaded cluster.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	clusterFile    string
	json           bool
	logLevel       string
	quiet          bool
	verbose        bool
	site           string

	log *log.Logger
	// mask hides the loaded cluster file's secrets in log lines (step
	// output and errors are masked where they are made).
	mask atomic.Pointer[redact.Masker]

	// active is the progress line being drawn, if any.
	active atomic.Value // *report.Progress

	// leftBehind says what a second Ctrl-C leaves on the hosts.
	leftBehind atomic.Value // func() string
	// stopLive ends the live view of a run, if one is on.
	stopLive func()
}

func (a *app) setLeftBehind(f func() string) { a.leftBehind.Store(f) }

func (a *app) leftBehindNote() string {
	if f, ok := a.leftBehind.Load().(func() string); ok {
		return f()
	}
	return ""
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, stopLive: func() {}}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	ctx, stop := interruptContext(stderr, a.leftBehindNote)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra's own usage error (a mistyped command) has no type.
		err = &flagError{err}
	}
	code := exitFor(ctx, err)
	var silent *reportedError
	if !errors.As(err, &silent) {
		a.printError(err, code)
	}
	return code
}

// exitFor is the exit code of err. An interrupt turns a failure into 130,
// but never hides what a more specific code says: something left behind
// (6), a refusal (5), a host that could not be used (3), a usage error (2).
func exitFor(ctx context.Context, err error) int {
	var fe *flagError
	if errors.As(err, &fe) {
		return exitcode.Usage
	}
	return session.ExitCode(ctx, err)
}

// interruptContext is cancelled by the first SIGINT or SIGTERM, so that
// work in progress stops and cleans up; a second one exits at once.
func interruptContext(stderr io.Writer, leftBehind func() string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-done:
			return
		}
		what := "interrupted (SIGINT)"
		if sig == syscall.SIGTERM {
			what = "terminated (SIGTERM)"
		}
		fmt.Fprintf(stderr, "\n%s: stopping remote commands and cleaning up (press Ctrl-C again to exit at once)\n", what)
		// The cause says which signal: SIGTERM exits 143, SIGINT 130.
		cancel(exitcode.Signalled(sig.(syscall.Signal)))
		select {
		case sig = <-sigs:
			note := leftBehind()
			if note == "" {
				note = "remote commands may be left running"
			}
			fmt.Fprintln(stderr, "interrupted again: exiting now; "+note)
			os.Exit(exitcode.Stopped(ctx))
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(sigs); close(done); cancel(nil) }
}

// flagError marks a usage error (exit 2).
type flagError struct{ error }

// reportedError is a failure whose details were already printed; main only
// sets the exit code.
type reportedError struct{ code int }

func (e *reportedError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func reported(code int) error {
	if code == exitcode.OK {
		return nil
	}
	return exitcode.With(code, &reportedError{code: code})
}

func (a *app) printError(err error, code int) {
	if a.json {
		kind := session.ErrorKind(err)
		var le *cluster.LoadError
		out := map[string]any{"error": err.Error(), "exit_code": code}
		if errors.As(err, &le) {
			out["problems"] = le.Lines()
		}
		if kind != "" {
			out["error_kind"] = kind
		}
		a.printJSON(out)
		return
	}
	fmt.Fprintf(a.stderr, "cvs: %v\n", err)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "cvs",
		Short: "Drive containers on a cluster of hosts over SSH",
		Long: `cvs runs containers on every host of a cluster over SSH: it checks that all
hosts agree (same container state, same image), starts or attaches to the
containers, provisions them, and runs suites inside them.`,
		Version:       readBuildInfo().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogging()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&a.clusterFile, "cluster", "c", "", "cluster file (default $CVS_CLUSTER, then ./cluster.toml)")
	pf.BoolVar(&a.json, "json", false, "print results as JSON on stdout (schemas in the README)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only results and errors (no logs, no progress)")
	pf.BoolVar(&a.verbose, "verbose", false, "print every host's row: the run's full summary table, and long tables (status, plan) whole")
	pf.StringVar(&a.site, "site", "", "apply the cluster file's [sites.NAME] image rewrite rules (default $CVS_SITE)")
	root.AddCommand(a.initCommand(), a.validateCommand(), a.statusCommand(), a.execCommand(), a.runCommand(), a.upCommand(),
		a.downCommand(), a.listCommand(), a.historyCommand(), a.logsCommand(), a.reportCommand(), a.imageCommand(), a.versionCommand())
	// cobra's completion command prints its help and exits 0 for a shell
	// it does not know (tcsh) or none: a usage error, exit 2.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				return &flagError{fmt.Errorf("%s: name a shell: bash, zsh, fish or powershell (got %q)", cmd.CommandPath(), strings.Join(args, " "))}
			}
		}
	}
	return root
}

// buildInfo is what this binary knows of itself: the version set at link
// time (make build), else the module version (go install ...@vX), else
// "dev"; the VCS commit, its time and whether the tree was modified (go
// build in a checkout records them); the Go version.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Time     string `json:"commit_time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	if b.Version == "dev" && b.Commit != "" {
		b.Version = "dev-" + b.Commit[:min(12, len(b.Commit))]
		if b.Modified {
			b.Version += "-dirty"
		}
	}
	return b
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the cvs version, commit and Go version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			b := readBuildInfo()
			if a.json {
				return a.printJSON(b)
			}
			fmt.Fprintf(a.stdout, "cvs %s\n", b.Version)
			if b.Commit != "" {
				mod := ""
				if b.Modified {
					mod = " (modified)"
				}
				fmt.Fprintf(a.stdout, "commit %s%s %s\n", b.Commit, mod, b.Time)
			}
			fmt.Fprintf(a.stdout, "%s\n", b.Go)
			return nil
		},
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &flagError{fmt.Errorf("%s takes no arguments (got %q)", cmd.CommandPath(), strings.Join(args, " "))}
	}
	return nil
}

func (a *app) setupLogging() error {
	lvl, err := log.ParseLevel(a.logLevel)
	if err != nil {
		return &flagError{fmt.Errorf("--log-level %q: use debug, info, warn or error", a.logLevel)}
	}
	if a.quiet {
		lvl = log.ErrorLevel
	}
	a.log = log.NewWithOptions(logWriter{a}, log.Options{Level: lvl, ReportTimestamp: true, TimeFormat: "15:04:05"})
	log.SetDefault(a.log)
	return nil
}

// logWriter writes log lines to stderr, first clearing a progress line that
// is drawn there, so the two never share a line.
type logWriter struct{ a *app }

func (w logWriter) Write(b []byte) (n int, err error) {
	if m := w.a.mask.Load(); m != nil {
		// One log line per write: masked whole, and reported as written
		// whole.
		if masked := m.String(string(b)); masked != string(b) {
			if _, err := w.write([]byte(masked)); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return w.write(b)
}

func (w logWriter) write(b []byte) (n int, err error) {
	p, ok := w.a.active.Load().(*report.Progress)
	if !ok {
		return w.a.stderr.Write(b)
	}
	p.Above(func() { n, err = w.a.stderr.Write(b) })
	return n, err
}

// clusterPath applies the --cluster, $CVS_CLUSTER, ./cluster.toml order.
func (a *app) clusterPath() string {
	if a.clusterFile != "" {
		return a.clusterFile
	}
	if env := os.Getenv("CVS_CLUSTER"); env != "" {
		return env
	}
	return "cluster.toml"
}

func (a *app) loadCluster() (*cluster.Config, error) {
	site := a.site
	if site == "" {
		site = os.Getenv("CVS_SITE")
	}
	cfg, err := cluster.LoadWith(a.clusterPath(), cluster.LoadOptions{Site: site})
	if err != nil {
		return nil, exitcode.With(exitcode.Usage, err)
	}
	a.mask.Store(redact.New(cfg.Secrets))
	for _, w := range cfg.Warnings {
		if a.log == nil {
			break // shell completion: no logger, and nothing to warn on
		}
		a.log.Warn(w)
	}
	// CVS_DOCKER_ACCESS overrides the file's docker_access (to compare the
	// two ways on one cluster, or to step around one).
	if v := os.Getenv("CVS_DOCKER_ACCESS"); v != "" {
		switch cluster.DockerAccess(v) {
		case cluster.DockerAccessAuto, cluster.DockerAccessAPI, cluster.DockerAccessCLI:
			cfg.DockerAccess = cluster.DockerAccess(v)
		default:
			return nil, &flagError{fmt.Errorf("CVS_DOCKER_ACCESS=%q is not one of auto, api, cli", v)}
		}
	}
	return cfg, nil
}

// progress starts a progress line on stderr when it is a terminal; log
// lines clear it first.
func (a *app) progress(label string, total int) *report.Progress {
	p := report.StartProgress(a.stderr, !a.quiet && isTerminal(a.stderr), label, total)
	a.active.Store(p)
	return p
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// rowLimit is how many rows a long table shows: report.MaxRows, or all
// with --verbose.
func (a *app) rowLimit() int {
	if a.verbose {
		return 0
	}
	return report.MaxRows
}

// printJSON writes v for a script: indented, and without Go's HTML
// escaping (a<b stays a<b, not a\u003cb: nothing here goes into a page).
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
