package cluster

// Resolving hosts entries into connection settings, with ~/.ssh/config.

import (
	"net"
	"strconv"
	"strings"
)

// HostsFromSlurm is hosts = "slurm": the nodes of the Slurm allocation cvs
// runs in ($SLURM_JOB_NODELIST, in Slurm's hostlist syntax).
const HostsFromSlurm = "slurm"

func (d *decoder) hosts(raw map[string]any, c *Config, userSet, portSet bool) {
	if v, isStr := raw["hosts"].(string); isStr && v == HostsFromSlurm {
		list := d.getenv("SLURM_JOB_NODELIST")
		if list == "" {
			d.fail("hosts", `is "slurm" but SLURM_JOB_NODELIST is not set: run cvs inside a Slurm allocation (salloc -N 4, or an sbatch script), or list the hosts`)
			return
		}
		names, err := ExpandHostList(list)
		if err != nil {
			d.fail("hosts", "SLURM_JOB_NODELIST %q: %v", list, err)
			return
		}
		raw = map[string]any{"hosts": toAny(names), "head": raw["head"]}
		if raw["head"] == nil {
			delete(raw, "head")
		}
	}
	entries, ok := d.strList(raw, "", "hosts", false)
	if !ok {
		if _, present := raw["hosts"]; !present {
			d.problem(0, "hosts", "missing; list the cluster's hosts, e.g. hosts = [\"node[01-04]\"]")
		}
		return
	}
	if len(entries) == 0 {
		d.fail("hosts", "is empty; list at least one host")
		return
	}
	seen := map[string]string{}
	for _, e := range entries {
		specs, err := parseHostEntry(e)
		if err != nil {
			d.fail("hosts", "%v", err)
			continue
		}
		for _, s := range specs {
			h := d.resolveHost(s, c, userSet, portSet)
			id := h.User + "@" + h.Addr + ":" + strconv.Itoa(h.Port)
			if prev, dup := seen[id]; dup {
				d.fail("hosts", "%s appears twice (from %q and %q); each host must be listed once", h.Name, prev, e)
				continue
			}
			seen[id] = e
			c.Hosts = append(c.Hosts, h)
		}
	}
	head, ok := d.str(raw, "", "head")
	if !ok || len(c.Hosts) == 0 {
		return
	}
	for i, h := range c.Hosts {
		if h.Name == head || h.Addr == head || h.HostPort() == head {
			c.HeadIndex = i
			return
		}
	}
	d.fail("head", "%q is not one of the hosts; write one of them (e.g. %q) or leave head out to use the first", head, c.Hosts[0].Name)
}

func (d *decoder) resolveHost(s hostSpec, c *Config, userSet, portSet bool) Host {
	h := Host{Name: s.name, Addr: s.addr, User: s.user, Port: s.port}
	sc := d.sshCfg.lookup(s.addr)
	if sc.hostName != "" {
		h.Addr = sc.hostName
	}
	switch {
	case h.User != "":
	case userSet:
		h.User = c.User
	case sc.user != "":
		h.User = sc.user
	default:
		h.User = c.User
	}
	switch {
	case h.Port != 0:
	case portSet:
		h.Port = c.Port
	case sc.port != 0:
		h.Port = sc.port
	default:
		h.Port = c.Port
	}
	if len(c.IdentityFiles) > 0 {
		h.IdentityFiles = c.IdentityFiles
	} else {
		for _, p := range sc.identityFiles {
			h.IdentityFiles = append(h.IdentityFiles, d.path(p))
		}
	}
	h.ProxyJump = c.ProxyJump
	if h.ProxyJump == "" && sc.proxyJump != "none" {
		h.ProxyJump = sc.proxyJump
	}
	if _, done := d.jumpCache[h.ProxyJump]; !done {
		if d.jumpCache == nil {
			d.jumpCache = map[string][]Jump{}
		}
		d.jumpCache[h.ProxyJump] = d.jumps(h.ProxyJump, c)
	}
	h.Jumps = d.jumpCache[h.ProxyJump]
	return h
}

// jumps resolves a proxy_jump chain "[user@]host[:port],...": each bastion
// takes its own ~/.ssh/config entry (not the target host's), what the
// entry pins winning; without either, the cluster file's user and port 22.
// Its identity files are its ssh_config IdentityFile, else the cluster
// file's identity_file (else, at dial time, the agent and default keys).
func (d *decoder) jumps(spec string, c *Config) []Jump {
	if spec == "" || spec == "none" {
		return nil
	}
	var out []Jump
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			d.fail("proxy_jump", "%q has an empty bastion; write host or user@host:port, comma-separated", spec)
			return nil
		}
		j := Jump{}
		rest := part
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			j.User, rest = rest[:at], rest[at+1:]
		}
		alias := strings.Trim(rest, "[]")
		if h, p, err := net.SplitHostPort(rest); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				d.fail("proxy_jump", "%q: port %q is not a number from 1 to 65535", part, p)
				return nil
			}
			alias, j.Port = h, n
		}
		sc := d.sshCfg.lookup(alias)
		j.Addr = alias
		if sc.hostName != "" {
			j.Addr = sc.hostName
		}
		if j.User == "" {
			j.User = sc.user
		}
		if j.User == "" {
			j.User = c.User
		}
		if j.Port == 0 {
			j.Port = sc.port
		}
		if j.Port == 0 {
			j.Port = 22
		}
		for _, p := range sc.identityFiles {
			j.IdentityFiles = append(j.IdentityFiles, d.path(p))
		}
		if len(j.IdentityFiles) == 0 {
			j.IdentityFiles = c.IdentityFiles
		}
		out = append(out, j)
	}
	return out
}

func toAny(names []string) []any {
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}
