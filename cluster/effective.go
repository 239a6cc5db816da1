package cluster

import (
	"strconv"
	"strings"
	"time"
)

// Effective is the configuration as cvs will use it, in the cluster file's
// own shape: every host expanded and fully pinned (user@addr:port), every
// default filled in. `cvs validate` prints it as TOML or JSON; the TOML is
// itself a valid cluster file.
type Effective struct {
	User              string              `toml:"user" json:"user"`
	IdentityFile      []string            `toml:"identity_file" json:"identity_file"`
	Port              int                 `toml:"port" json:"port"`
	KnownHosts        string              `toml:"known_hosts" json:"known_hosts"`
	HostKeyCheck      string              `toml:"host_key_check" json:"host_key_check"`
	ConnectTimeout    string              `toml:"connect_timeout" json:"connect_timeout"`
	CommandTimeout    string              `toml:"command_timeout" json:"command_timeout"`
	KeepAliveInterval string              `toml:"keepalive_interval" json:"keepalive_interval"`
	MaxParallel       int                 `toml:"max_parallel" json:"max_parallel"`
	MaxClockSkew      string              `toml:"max_clock_skew" json:"max_clock_skew"`
	ProxyJump         string              `toml:"proxy_jump" json:"proxy_jump"`
	Head              string              `toml:"head" json:"head"`
	Sudo              bool                `toml:"sudo" json:"sudo"`
	DockerAccess      string              `toml:"docker_access" json:"docker_access"`
	DockerSocket      string              `toml:"docker_socket" json:"docker_socket"`
	LockDir           string              `toml:"lock_dir,omitempty" json:"lock_dir,omitempty"`
	Engine            EffEngine           `toml:"engine" json:"engine"`
	Hosts             []string            `toml:"hosts" json:"hosts"`
	Env               map[string]string   `toml:"env,omitempty" json:"env,omitempty"`
	Container         EffContainer        `toml:"container" json:"container"`
	Suites            map[string]EffSuite `toml:"suites,omitempty" json:"suites,omitempty"`
	Sites             map[string]EffSite  `toml:"sites,omitempty" json:"sites,omitempty"`
}

// EffContainer is the [container] table of Effective.
type EffContainer struct {
	Lifetime     string            `toml:"lifetime" json:"lifetime"`
	Image        string            `toml:"image,omitempty" json:"image"`
	Pin          string            `toml:"pin" json:"pin"`
	Distribute   string            `toml:"distribute" json:"distribute"`
	Platform     string            `toml:"platform,omitempty" json:"platform,omitempty"`
	StrictAttach bool              `toml:"strict_attach" json:"strict_attach"`
	PinTTL       string            `toml:"pin_ttl" json:"pin_ttl"`
	PinTimeout   string            `toml:"pin_timeout" json:"pin_timeout"`
	Name         string            `toml:"name" json:"name"`
	SetupScript  string            `toml:"setup_script" json:"setup_script"`
	PullTimeout  string            `toml:"pull_timeout" json:"pull_timeout"`
	SSHDPort     int               `toml:"sshd_port" json:"sshd_port"`
	Network      string            `toml:"network,omitempty" json:"network,omitempty"`
	IPC          string            `toml:"ipc,omitempty" json:"ipc,omitempty"`
	PID          string            `toml:"pid,omitempty" json:"pid,omitempty"`
	Privileged   bool              `toml:"privileged,omitempty" json:"privileged,omitempty"`
	Devices      []string          `toml:"devices,omitempty" json:"devices,omitempty"`
	Volumes      []string          `toml:"volumes,omitempty" json:"volumes,omitempty"`
	CapAdd       []string          `toml:"cap_add,omitempty" json:"cap_add,omitempty"`
	SecurityOpt  []string          `toml:"security_opt,omitempty" json:"security_opt,omitempty"`
	GroupAdd     []string          `toml:"group_add,omitempty" json:"group_add,omitempty"`
	ShmSize      string            `toml:"shm_size,omitempty" json:"shm_size,omitempty"`
	Ulimits      []string          `toml:"ulimits,omitempty" json:"ulimits,omitempty"`
	Env          map[string]string `toml:"env,omitempty" json:"env,omitempty"`
}

// EffSite is one [sites.NAME] table of Effective.
type EffSite struct {
	Image struct {
		Rewrite []EffRewrite `toml:"rewrite" json:"rewrite"`
	} `toml:"image" json:"image"`
}

// EffRewrite is one rewrite rule of EffSite.
type EffRewrite struct {
	Match   string `toml:"match" json:"match"`
	Replace string `toml:"replace" json:"replace"`
}

// EffSuite is one suite of Effective.
type EffSuite struct {
	Description string    `toml:"description,omitempty" json:"description,omitempty"`
	User        string    `toml:"user,omitempty" json:"user,omitempty"`
	Steps       []EffStep `toml:"steps" json:"steps"`
}

// EffStep is one step of EffSuite.
type EffStep struct {
	Name    string            `toml:"name" json:"name"`
	Run     string            `toml:"run" json:"run"`
	On      string            `toml:"on" json:"on"`
	Timeout string            `toml:"timeout" json:"timeout"`
	Env     map[string]string `toml:"env,omitempty" json:"env,omitempty"`
	User    string            `toml:"user,omitempty" json:"user,omitempty"`
}

// Effective returns the effective configuration.
func (c *Config) Effective() Effective {
	e := Effective{
		User: c.User, IdentityFile: c.IdentityFiles, Port: c.Port, KnownHosts: c.KnownHosts,
		HostKeyCheck: string(c.HostKeyCheck), ConnectTimeout: dur(c.ConnectTimeout),
		CommandTimeout: dur(c.CommandTimeout), KeepAliveInterval: dur(c.KeepAlive),
		MaxParallel: c.MaxParallel, MaxClockSkew: skew(c.MaxClockSkew), ProxyJump: c.ProxyJump, Sudo: c.Sudo, DockerAccess: string(c.DockerAccess), DockerSocket: c.DockerSocket, LockDir: c.LockDir, Engine: EffEngine{Kind: string(c.Engine.Kind), Srun: c.Engine.Srun, CleartextSecrets: c.Engine.CleartextSecrets}, Env: c.shownEnv("env", c.Env),
	}
	if e.IdentityFile == nil {
		e.IdentityFile = []string{}
	}
	for _, h := range c.Hosts {
		e.Hosts = append(e.Hosts, h.Pinned())
	}
	if len(c.Hosts) > 0 {
		e.Head = c.Head().HostPort()
	}
	ct := c.Container
	e.Container = EffContainer{
		Lifetime: string(ct.Lifetime), Image: ct.ConfiguredImage, Pin: string(ct.Pin), PinTTL: dur(ct.PinTTL), PinTimeout: dur(ct.PinTimeout), Distribute: ct.Distribute, Platform: ct.Platform, StrictAttach: ct.StrictAttach,
		Name: ct.Name, SetupScript: ct.SetupScript,
		PullTimeout: dur(ct.PullTimeout), SSHDPort: ct.SSHDPort, Network: ct.Network, IPC: ct.IPC,
		PID: ct.PID, Privileged: ct.Privileged, Devices: ct.Devices, Volumes: ct.Volumes,
		CapAdd: ct.CapAdd, SecurityOpt: ct.SecurityOpt, GroupAdd: ct.GroupAdd, ShmSize: ct.ShmSize,
		Ulimits: ct.Ulimits, Env: c.shownEnv("container.env", ct.Env),
	}
	if len(c.Sites) > 0 {
		e.Sites = map[string]EffSite{}
		for _, site := range c.Sites {
			var es EffSite
			es.Image.Rewrite = []EffRewrite{}
			for _, r := range site.Rewrites {
				es.Image.Rewrite = append(es.Image.Rewrite, EffRewrite{Match: r.Match, Replace: r.Replace})
			}
			e.Sites[site.Name] = es
		}
	}
	if len(c.Suites) > 0 {
		e.Suites = map[string]EffSuite{}
		for _, s := range c.Suites {
			es := EffSuite{Description: s.Description, User: s.User}
			var steps []EffStep
			for i, st := range s.Steps {
				step := EffStep{Name: st.Name, Run: st.Run, On: string(st.On), Timeout: dur(st.Timeout),
					Env: c.shownEnv("suites."+s.Name+".steps."+strconv.Itoa(i)+".env", st.Env)}
				if st.User != s.User {
					step.User = st.User
				}
				steps = append(steps, step)
			}
			es.Steps = steps
			e.Suites[s.Name] = es
		}
	}
	return e
}

// Pinned returns the host as a fully pinned hosts entry: user@addr:port,
// with IPv6 addresses in brackets.
func (h Host) Pinned() string {
	return h.User + "@" + h.HostPort()
}

// HostPort returns addr:port, with IPv6 addresses in brackets.
func (h Host) HostPort() string {
	addr := h.Addr
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return addr + ":" + strconv.Itoa(h.Port)
}

func dur(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// Redacted is the value that stands for a secret in printed configuration.
const Redacted = "<redacted>"

// Redacted returns e with the values of [env], [container.env] and every
// step's env replaced by Redacted (the names stay): what cvs prints unless
// asked for secrets, since terminals and CI logs keep what they show.
func (e Effective) Redacted() Effective {
	hide := func(m map[string]string) map[string]string {
		if m == nil {
			return nil
		}
		out := make(map[string]string, len(m))
		for k := range m {
			out[k] = Redacted
		}
		return out
	}
	e.Env = hide(e.Env)
	e.Container.Env = hide(e.Container.Env)
	if e.Suites != nil {
		suites := make(map[string]EffSuite, len(e.Suites))
		for name, s := range e.Suites {
			steps := make([]EffStep, len(s.Steps))
			for i, st := range s.Steps {
				st.Env = hide(st.Env)
				steps[i] = st
			}
			s.Steps = steps
			suites[name] = s
		}
		e.Suites = suites
	}
	return e
}

// skew prints max_clock_skew, "off" for none.
func skew(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return dur(d)
}

// EffEngine is [engine] as the effective configuration shows it.
type EffEngine struct {
	Kind string `toml:"kind" json:"kind"`
	Srun string `toml:"srun,omitempty" json:"srun,omitempty"`
	// CleartextSecrets: see Engine.
	CleartextSecrets bool `toml:"cleartext_secrets,omitempty" json:"cleartext_secrets,omitempty"`
}
