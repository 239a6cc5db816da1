package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
)

// LoadOptions adjust how a cluster file is read. The zero value reads the
// operator's own ~/.ssh/config and takes the current user from the OS.
type LoadOptions struct {
	// SSHConfig is the ssh_config file to honour; empty means
	// ~/.ssh/config, "none" means no file.
	SSHConfig string
	// CurrentUser replaces the OS user name (for tests).
	CurrentUser string
	// Home replaces the home directory used to expand "~" (for tests).
	Home string
	// Site selects the [sites.NAME] table whose rewrite rules apply to the
	// image (cvs --site, $CVS_SITE); empty: none.
	Site string
	// Getenv replaces os.Getenv (for tests).
	Getenv func(string) string
}

// Load reads, checks and completes the cluster file at path. A file with
// problems returns a *LoadError listing all of them.
func Load(path string) (*Config, error) { return LoadWith(path, LoadOptions{}) }

// LoadWith is Load with options.
func LoadWith(path string, opts LoadOptions) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	text, err := os.ReadFile(abs)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			msg = "no such file; pass --cluster FILE, set CVS_CLUSTER, or start from examples/cluster.toml"
		}
		return nil, &LoadError{File: path, Problems: []Problem{{Msg: msg}}}
	}
	d, err := newDecoder(abs, opts)
	if err != nil {
		return nil, err
	}
	d.lines = locateKeys(string(text))
	var raw map[string]any
	if _, err := toml.Decode(string(text), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			d.problem(pe.Position.Line, pe.LastKey, "%s", pe.Message)
		} else {
			d.problem(0, "", "%v", err)
		}
		return nil, d.err(path)
	}
	cfg := d.config(raw)
	if err := d.err(path); err != nil {
		return nil, err
	}
	return cfg, nil
}

type decoder struct {
	// jumpCache holds each proxy_jump chain resolved once (its problems
	// reported once).
	jumpCache map[string][]Jump

	file     string
	dir      string
	home     string
	user     string // the operator's login name, for {user-id}
	sshCfg   *sshConfig
	lines    keyLines
	problems []Problem
	site     string // LoadOptions.Site
	getenv   func(string) string
	lookup   func(string) (string, bool) // os.LookupEnv unless Getenv is set

	secrets  []string          // Config.Secrets
	warnings []string          // Config.Warnings
	envFrom  map[string]string // Config.envFrom
	// secretKeys are the key paths of the secret env values, in file
	// order of reading (the Slurm engine refuses them unless accepted).
	secretKeys []string
}

func newDecoder(abs string, opts LoadOptions) (*decoder, error) {
	d := &decoder{file: abs, dir: filepath.Dir(abs), home: opts.Home, user: opts.CurrentUser, site: opts.Site, getenv: opts.Getenv}
	if d.getenv == nil {
		d.getenv, d.lookup = os.Getenv, os.LookupEnv
	}
	if d.home == "" {
		d.home, _ = os.UserHomeDir()
	}
	if d.user == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("cannot tell the current user (needed for the default user and {user-id}): %w", err)
		}
		d.user = u.Username
	}
	sc, err := loadSSHConfig(opts.SSHConfig, d.home)
	if err != nil {
		return nil, err
	}
	d.sshCfg = sc
	return d, nil
}

func (d *decoder) err(path string) error {
	if len(d.problems) == 0 {
		return nil
	}
	sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
	return &LoadError{File: path, Problems: d.problems}
}

func (d *decoder) problem(line int, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// fail records a problem at the line of the key path.
func (d *decoder) fail(path, format string, args ...any) {
	d.problem(d.lines.line(path), displayKey(path), format, args...)
}
