// Package cluster loads and checks the cluster file: the TOML file in which
// an operator lists the hosts of a cluster, how to reach them over SSH, the
// container to run on each of them and the suites to run inside it.
//
// Loading is strict: an unknown key, a value of the wrong type or a legacy key
// is a problem naming the file, the line and the key, and Load reports every
// problem of a file at once.
package cluster

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// HostKeyCheck says how host keys are verified.
type HostKeyCheck string

const (
	// HostKeyStrict accepts only keys listed in known_hosts.
	HostKeyStrict HostKeyCheck = "strict"
	// HostKeyAcceptNew records the key of a host known_hosts does not list
	// yet, and refuses a key that differs from a recorded one.
	HostKeyAcceptNew HostKeyCheck = "accept-new"
	// HostKeyOff accepts any key. It must be written explicitly.
	HostKeyOff HostKeyCheck = "off"
)

// Lifetime says who owns the container on each host and how long it lives.
type Lifetime string

const (
	// LifetimeNoLaunch: the operator runs the container; cvs never starts or
	// removes it.
	LifetimeNoLaunch Lifetime = "no_launch"
	// LifetimePerRun: cvs launches the container for one run and removes it
	// afterwards.
	LifetimePerRun Lifetime = "per_run"
	// LifetimePersistent: the container outlives runs; cvs cold-starts it
	// when absent everywhere and attaches when running everywhere.
	LifetimePersistent Lifetime = "persistent"
)

// On selects the hosts a suite step runs on.
type On string

const (
	OnAll  On = "all"
	OnHead On = "head"
)

// Config is a loaded, checked cluster file with every default filled in.
type Config struct {
	// File is the absolute path of the cluster file.
	File string `json:"file"`

	User           string        `json:"user"`
	IdentityFiles  []string      `json:"identity_file"`
	Port           int           `json:"port"`
	KnownHosts     string        `json:"known_hosts"`
	HostKeyCheck   HostKeyCheck  `json:"host_key_check"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	CommandTimeout time.Duration `json:"command_timeout"`
	KeepAlive      time.Duration `json:"keepalive_interval"`
	MaxParallel    int           `json:"max_parallel"`
	// MaxClockSkew is how far a host's clock may be from this machine's
	// before a run refuses to use it (0: not checked).
	MaxClockSkew time.Duration `json:"max_clock_skew"`
	ProxyJump    string        `json:"proxy_jump,omitempty"`
	Sudo         bool          `json:"sudo"`
	// DockerAccess is how cvs talks to each host's Docker daemon.
	DockerAccess DockerAccess `json:"docker_access"`
	// DockerSocket is the daemon's Unix socket on the hosts, for the API.
	DockerSocket string `json:"docker_socket"`
	// LockDir is the folder of the cluster lock on each host; empty is
	// the default (a host-local folder of the SSH user, see package lock).
	LockDir string `json:"lock_dir,omitempty"`
	// Engine is how cvs reaches the hosts.
	Engine Engine `json:"engine"`

	// Hosts are the expanded hosts in file order; Hosts[HeadIndex] is the
	// head.
	Hosts     []Host            `json:"hosts"`
	HeadIndex int               `json:"-"`
	Env       map[string]string `json:"env,omitempty"`

	Container Container `json:"container"`

	// Suites are sorted by name.
	Suites []Suite `json:"suites,omitempty"`
	// Sites are the [sites.NAME] tables, sorted by name; Site is the one
	// selected (--site, $CVS_SITE), "" for none.
	Sites []Site `json:"sites,omitempty"`
	Site  string `json:"site,omitempty"`

	// Secrets are the values a run masks wherever it prints step output:
	// every env value read from the environment or a file, and literal
	// values of keys whose name looks secret (SecretName). Never printed.
	Secrets []string `json:"-"`
	// Warnings are what the loader found worth saying about a file it
	// accepted: a secret file others can read, a selected site whose
	// rules leave the image as it is. The CLI logs them.
	Warnings []string `json:"-"`
	// envFrom says where each env value read from the environment or a
	// file came from, by key path ("container.env.TOKEN"): "$NAME" or
	// "file PATH", what the effective configuration shows instead.
	envFrom map[string]string
}

// Head returns the head host.
func (c *Config) Head() Host { return c.Hosts[c.HeadIndex] }

// Suite returns the suite called name.
func (c *Config) Suite(name string) (Suite, bool) {
	for _, s := range c.Suites {
		if s.Name == name {
			return s, true
		}
	}
	return Suite{}, false
}

// SuiteNames lists the suites in name order.
func (c *Config) SuiteNames() []string {
	names := make([]string, len(c.Suites))
	for i, s := range c.Suites {
		names[i] = s.Name
	}
	sort.Strings(names)
	return names
}

// Host is one cluster host with its connection settings resolved: what the
// host entry pins, then the cluster file's keys, then ~/.ssh/config, then the
// defaults.
type Host struct {
	// Name is how cvs refers to the host in output: the address as written
	// in the cluster file, with ":port" when the entry named a port.
	Name string `json:"name"`
	// Addr is the address dialled (after ~/.ssh/config's HostName).
	Addr          string   `json:"addr"`
	Port          int      `json:"port"`
	User          string   `json:"user"`
	IdentityFiles []string `json:"identity_file,omitempty"`
	ProxyJump     string   `json:"proxy_jump,omitempty"`
	// Jumps are ProxyJump's bastions resolved, in the order they are
	// dialled (ProxyJump "a,b": a first, then b through a).
	Jumps []Jump `json:"jumps,omitempty"`
}

// Jump is one bastion of a proxy_jump chain, resolved as OpenSSH does: its
// own ~/.ssh/config entry (HostName, User, Port, IdentityFile), what the
// proxy_jump entry pins ([user@]host[:port]) winning.
type Jump struct {
	Addr          string   `json:"addr"`
	Port          int      `json:"port"`
	User          string   `json:"user"`
	IdentityFiles []string `json:"identity_file,omitempty"`
}

// String is user@addr:port.
func (j Jump) String() string {
	return j.User + "@" + net.JoinHostPort(j.Addr, strconv.Itoa(j.Port))
}

// Site is a [sites.NAME] table: how one site's copy of the cluster file
// differs, today its image rewrite rules.
type Site struct {
	Name     string    `json:"name"`
	Rewrites []Rewrite `json:"image_rewrites"`
}

// Rewrite is one [[sites.NAME.image.rewrite]] rule: Match is the whole
// image reference, or with Regex a regular expression ("re:" in the file)
// that must match all of it; Replace may use $1-style groups.
type Rewrite struct {
	Match   string         `json:"match"`
	Regex   *regexp.Regexp `json:"-"`
	Replace string         `json:"replace"`
}

// Apply returns ref rewritten by the first rule that matches it, and
// whether one did.
func (s Site) Apply(ref string) (string, bool) {
	for _, r := range s.Rewrites {
		switch {
		case r.Regex != nil && r.Regex.MatchString(ref):
			return r.Regex.ReplaceAllString(ref, r.Replace), true
		case r.Regex == nil && r.Match == ref:
			return r.Replace, true
		}
	}
	return ref, false
}

// Pin is [container] pin: what a run does when the image's tag cannot be
// resolved to a digest.
type Pin string

// The pin modes.
const (
	// PinRequired: no digest, no run.
	PinRequired Pin = "required"
	// PinPrefer: warn loudly and launch the tag.
	PinPrefer Pin = "prefer"
	// PinOff: launch the tag; the controller never asks a registry.
	PinOff Pin = "off"
)

// How hosts get the image ([container] distribute).
const (
	DistributePull = "pull"
	DistributePush = "push"
)

// SetupNone is setup_script = "none": fresh containers are not
// provisioned (the image has what the steps and sshd need).
const SetupNone = "none"

// Container is the [container] table.
type Container struct {
	Lifetime Lifetime `json:"lifetime"`
	// Image is the effective image reference: ConfiguredImage after the
	// selected site's rewrite rules.
	Image string `json:"image"`
	// ConfiguredImage is the image as the cluster file writes it.
	ConfiguredImage string `json:"configured_image"`
	Name            string `json:"name"`
	// SetupScript is the resolved path of the operator's setup script,
	// empty for the packaged default, or SetupNone: no provisioning.
	SetupScript string        `json:"setup_script,omitempty"`
	PullTimeout time.Duration `json:"pull_timeout"`
	// Pin, PinTTL and PinTimeout govern resolving Image to a digest once
	// per run (how old a cached digest may be to stand in for an unreachable
	// registry, 0: never; the bound on one resolution).
	Pin Pin `json:"pin"`
	// StrictAttach refuses an attach to containers launched with other
	// settings than the cluster file's (drift), instead of warning.
	StrictAttach bool `json:"strict_attach"`
	// Distribute is how hosts get the image: DistributePull (from its
	// registry) or DistributePush (cvs sends what each host lacks).
	Distribute string `json:"distribute"`
	// Platform ("os/arch[/variant]", "" none) forces the platform taken
	// from a multi-platform image, whatever the hosts' architectures.
	Platform   string        `json:"platform,omitempty"`
	PinTTL     time.Duration `json:"pin_ttl"`
	PinTimeout time.Duration `json:"pin_timeout"`
	SSHDPort   int           `json:"sshd_port"`

	Network     string            `json:"network,omitempty"`
	IPC         string            `json:"ipc,omitempty"`
	PID         string            `json:"pid,omitempty"`
	Privileged  bool              `json:"privileged,omitempty"`
	Devices     []string          `json:"devices,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	CapAdd      []string          `json:"cap_add,omitempty"`
	SecurityOpt []string          `json:"security_opt,omitempty"`
	GroupAdd    []string          `json:"group_add,omitempty"`
	ShmSize     string            `json:"shm_size,omitempty"`
	Ulimits     []string          `json:"ulimits,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
}

// Suite is one [suites.NAME] table: steps run in order inside the
// containers.
type Suite struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// User runs the suite's steps (docker exec -u); empty: the image's USER.
	User  string `json:"user,omitempty"`
	Steps []Step `json:"steps"`
}

// Step is one step of a suite.
type Step struct {
	Name    string            `json:"name"`
	Run     string            `json:"run"`
	On      On                `json:"on"`
	Timeout time.Duration     `json:"timeout"`
	Env     map[string]string `json:"env,omitempty"`
	// User runs the step: the step's own user key, else the suite's; empty:
	// the image's USER.
	User string `json:"user,omitempty"`
}

// Problem is one thing wrong with a cluster file.
type Problem struct {
	Line int    // 1-based; 0 when the problem has no single line
	Key  string // dotted key path, or empty
	Msg  string
}

// LoadError lists every problem found in a cluster file.
type LoadError struct {
	File     string
	Problems []Problem
}

func (e *LoadError) Error() string {
	s := fmt.Sprintf("%s: %d problem(s)", e.File, len(e.Problems))
	for _, p := range e.Problems {
		s += "\n  " + e.format(p)
	}
	return s
}

func (e *LoadError) format(p Problem) string {
	loc := e.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, p.Line)
	}
	if p.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Key, p.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, p.Msg)
}

// Lines returns each problem as one "file:line: key: message" line.
func (e *LoadError) Lines() []string {
	out := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = e.format(p)
	}
	return out
}

// DockerAccess is how cvs talks to a host's Docker daemon.
type DockerAccess string

const (
	// DockerAccessAuto: the Engine API through the SSH connection where the
	// daemon's socket can be opened (the SSH user is root or in the docker
	// group, sshd allows stream-local forwarding, sudo is off), else the
	// docker CLI. Chosen per host, once per invocation.
	DockerAccessAuto DockerAccess = "auto"
	// DockerAccessAPI: the Engine API only; a host where it cannot be
	// used fails.
	DockerAccessAPI DockerAccess = "api"
	// DockerAccessCLI: the docker CLI on the host, as with sudo.
	DockerAccessCLI DockerAccess = "cli"
)

// HostNames are the hosts' names, in file order.
func (c *Config) HostNames() []string {
	names := make([]string, len(c.Hosts))
	for i, h := range c.Hosts {
		names[i] = h.Name
	}
	return names
}

// Engine is how cvs reaches the hosts ([engine]).
type Engine struct {
	Kind EngineKind `json:"kind"`
	// Srun is the srun executable (kind "slurm"); "" is srun in $PATH.
	Srun string `json:"srun,omitempty"`
	// CleartextSecrets accepts that, through Slurm, secret env values
	// cross the cluster network in clear (srun's I/O is not encrypted);
	// without it a Slurm cluster file with secrets does not load.
	CleartextSecrets bool `json:"cleartext_secrets,omitempty"`
}

// EngineKind names an engine.
type EngineKind string

const (
	// EngineSSH: one SSH connection per host (the default).
	EngineSSH EngineKind = "ssh"
	// EngineSlurm: every per-host command is an srun task on that node,
	// started by Slurm's daemons; no SSH to the nodes.
	EngineSlurm EngineKind = "slurm"
)
