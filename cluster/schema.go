package cluster

// The cluster file's schema: its tables, keys and defaults.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Known keys per table; an unknown key is a problem with a suggestion.
var (
	topKeys = []string{"user", "identity_file", "port", "known_hosts", "host_key_check",
		"connect_timeout", "command_timeout", "keepalive_interval", "max_parallel", "max_clock_skew",
		"proxy_jump", "head", "sudo", "docker_access", "docker_socket", "lock_dir", "hosts", "env", "container", "suites", "sites", "engine"}
	engineKeys    = []string{"kind", "srun", "cleartext_secrets"}
	containerKeys = []string{"lifetime", "image", "pin", "pin_ttl", "pin_timeout", "distribute", "platform", "strict_attach", "name", "setup_script", "pull_timeout",
		"sshd_port", "network", "ipc", "pid", "privileged", "devices", "volumes", "cap_add",
		"security_opt", "group_add", "shm_size", "ulimits", "env"}
	suiteKeys   = []string{"description", "user", "steps"}
	siteKeys    = []string{"image"}
	rewriteKeys = []string{"match", "replace"}
	stepKeys    = []string{"name", "run", "on", "timeout", "env", "user"}
)

// legacy keys are never mapped silently: each gets a migration message.
var legacyContainerKeys = map[string]string{
	"enabled": `was removed; write lifetime = "per_run" (cvs launches and removes the container each run), "persistent" (install once, attach on later runs) or "no_launch" (you run the container yourself)`,
	"launch":  `was removed; launch = true is now lifetime = "per_run", launch = false is now lifetime = "no_launch" (use "persistent" to keep containers between runs)`,
}

func (d *decoder) config(raw map[string]any) *Config {
	d.checkKeys(raw, "", topKeys, nil)
	c := &Config{
		File:           d.file,
		User:           d.user,
		Port:           DefaultPort,
		KnownHosts:     d.path(DefaultKnownHosts),
		HostKeyCheck:   DefaultHostKeyCheck,
		ConnectTimeout: DefaultConnectTimeout,
		CommandTimeout: DefaultCommandTimeout,
		KeepAlive:      DefaultKeepAlive,
		MaxParallel:    DefaultMaxParallel,
	}
	userSet, portSet := false, false
	if v, ok := d.str(raw, "", "user"); ok {
		if v == "" {
			d.fail("user", "must not be empty; leave it out to use your own user name")
		}
		c.User, userSet = v, true
	}
	if v, ok := d.strList(raw, "", "identity_file", true); ok {
		for _, p := range v {
			c.IdentityFiles = append(c.IdentityFiles, d.path(p))
		}
	}
	if v, ok := d.integer(raw, "", "port", 1, 65535); ok {
		c.Port, portSet = v, true
	}
	if v, ok := d.str(raw, "", "known_hosts"); ok {
		c.KnownHosts = d.path(v)
	}
	if v, ok := d.str(raw, "", "host_key_check"); ok {
		switch HostKeyCheck(v) {
		case HostKeyStrict, HostKeyAcceptNew, HostKeyOff:
			c.HostKeyCheck = HostKeyCheck(v)
		default:
			d.fail("host_key_check", "%q is not one of \"strict\", \"accept-new\", \"off\"", v)
		}
	}
	if v, ok := d.duration(raw, "", "connect_timeout"); ok {
		c.ConnectTimeout = v
	}
	if v, ok := d.duration(raw, "", "command_timeout"); ok {
		c.CommandTimeout = v
	}
	if v, ok := d.duration(raw, "", "keepalive_interval"); ok {
		c.KeepAlive = v
	}
	if v, ok := d.integer(raw, "", "max_parallel", 1, 100000); ok {
		c.MaxParallel = v
	}
	c.MaxClockSkew = DefaultMaxClockSkew
	if v, ok := raw["max_clock_skew"]; ok {
		if s, isStr := v.(string); isStr && (s == "0" || s == "off") {
			c.MaxClockSkew = 0
		} else if v, ok := d.duration(raw, "", "max_clock_skew"); ok {
			c.MaxClockSkew = v
		}
	}
	if v, ok := d.str(raw, "", "proxy_jump"); ok && v != "" {
		for _, part := range strings.Split(v, ",") {
			if part == "" {
				continue // jumps() names the empty bastion
			}
			if specs, err := parseHostEntry(strings.TrimSpace(part)); err != nil || len(specs) != 1 {
				d.fail("proxy_jump", "%q is not [user@]host[:port] (a chain is written a,b: a first, then b through it)", part)
			}
		}
		c.ProxyJump = v
	}
	if v, ok := d.boolean(raw, "", "sudo"); ok {
		c.Sudo = v
	}
	c.DockerAccess = DockerAccessAuto
	c.DockerSocket = DefaultDockerSocket
	if v, ok := d.str(raw, "", "docker_socket"); ok {
		if !strings.HasPrefix(v, "/") {
			d.fail("docker_socket", "%q is not an absolute path on the hosts (the daemon's Unix socket, e.g. /run/user/1000/docker.sock for a rootless daemon)", v)
		}
		c.DockerSocket = v
	}
	if v, ok := d.str(raw, "", "lock_dir"); ok {
		if !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "~/") {
			d.fail("lock_dir", "%q is not an absolute path on the hosts (or ~/ for the SSH user's home there); leave it out for the default, a host-local folder", v)
		} else if strings.ContainsAny(v, "\n\x00") {
			d.fail("lock_dir", "%q holds a newline or NUL byte", v)
		}
		c.LockDir = v
	}
	if v, ok := d.str(raw, "", "docker_access"); ok {
		switch DockerAccess(v) {
		case DockerAccessAuto, DockerAccessAPI, DockerAccessCLI:
			c.DockerAccess = DockerAccess(v)
		default:
			d.fail("docker_access", "%q is not one of \"auto\" (the Engine API through the SSH connection where the socket opens, else the docker CLI), \"api\", \"cli\"", v)
		}
	}
	c.Env = d.env(raw, "", "env")

	d.hosts(raw, c, userSet, portSet)
	c.Container = d.container(raw)
	c.Suites = d.suites(raw)
	c.Sites = d.sites(raw)
	c.Engine = d.engine(raw)
	if c.Engine.Kind == EngineSlurm && !c.Engine.CleartextSecrets {
		for _, k := range d.secretKeys {
			d.fail(k, "is a secret, and with [engine] kind = \"slurm\" it would cross the cluster network in clear (srun's input and output are not encrypted, unlike SSH): "+
				"use kind = \"ssh\", or set [engine] cleartext_secrets = true to accept that")
		}
	}
	d.applySite(c)
	slices.Sort(d.secrets)
	c.Secrets, c.Warnings, c.envFrom = slices.Compact(d.secrets), d.warnings, d.envFrom
	return c
}

var (
	dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	suiteName  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
)

func (d *decoder) container(raw map[string]any) Container {
	ct := Container{Lifetime: DefaultLifetime, PullTimeout: DefaultPullTimeout, SSHDPort: DefaultSSHDPort,
		Pin: DefaultPin, PinTTL: DefaultPinTTL, PinTimeout: DefaultPinTimeout, Distribute: DistributePull}
	m, ok := d.table(raw, "", "container")
	if !ok {
		ct.Name = "cvs-" + sanitizeName(d.user)
		if _, present := raw["container"]; !present {
			d.fail("", "no [container] table: cvs needs at least its image to launch containers (lifetime %q by default); add\n    [container]\n    image = \"registry:5000/team/image:tag\"", ct.Lifetime)
		}
		return ct
	}
	const p = "container"
	d.checkKeys(m, p, containerKeys, legacyContainerKeys)
	if v, ok := d.str(m, p, "lifetime"); ok {
		switch Lifetime(v) {
		case LifetimeNoLaunch, LifetimePerRun, LifetimePersistent:
			ct.Lifetime = Lifetime(v)
		case "external":
			d.fail(p+".lifetime", `"external" is called "no_launch" in cvs; write lifetime = "no_launch"`)
		default:
			d.fail(p+".lifetime", "%q is not one of \"no_launch\", \"per_run\", \"persistent\"", v)
		}
	}
	if v, ok := d.str(m, p, "image"); ok {
		if _, err := name.ParseReference(v); err != nil || strings.HasPrefix(v, "-") {
			d.fail(p+".image", "%q is not an image reference; write e.g. \"registry:5000/team/image:tag\" (lower-case repository, one :tag, an optional @sha256:digest)", v)
		}
		ct.Image = v
	}
	if ct.Image == "" && ct.Lifetime != LifetimeNoLaunch {
		if _, present := m["image"]; !present {
			d.fail(p, "image is missing; cvs needs it to launch the container (lifetime %q)", ct.Lifetime)
		}
	}
	if v, ok := d.str(m, p, "name"); ok {
		if !dockerName.MatchString(v) {
			d.fail(p+".name", "%q is not a valid container name (letters, digits, '_', '.', '-'; at least 2 characters, starting with a letter or digit)", v)
		}
		ct.Name = v
	}
	if ct.Name == "" {
		switch ct.Lifetime {
		case LifetimePersistent, LifetimeNoLaunch:
			if _, present := m["name"]; !present {
				d.fail(p, "name is missing; lifetime %q needs a fixed container name, e.g. name = \"cvs-{user-id}\"", ct.Lifetime)
			}
		default:
			ct.Name = "cvs-" + sanitizeName(d.user)
		}
	}
	switch v, ok := d.str(m, p, "setup_script"); {
	case !ok || v == "":
	case v == SetupNone:
		ct.SetupScript = SetupNone
	default:
		ct.SetupScript = d.path(v)
		d.checkSetupScript(ct.SetupScript)
	}
	if v, ok := d.str(m, p, "pin"); ok {
		switch Pin(v) {
		case PinRequired, PinPrefer, PinOff:
			ct.Pin = Pin(v)
		default:
			d.fail(p+".pin", "%q is not one of \"required\", \"prefer\", \"off\"", v)
		}
	}
	if v, ok := d.boolean(m, p, "strict_attach"); ok {
		ct.StrictAttach = v
	}
	if v, ok := d.str(m, p, "distribute"); ok {
		switch v {
		case DistributePull, DistributePush:
			ct.Distribute = v
		default:
			d.fail(p+".distribute", "%q is not \"pull\" or \"push\"", v)
		}
	}
	if v, ok := d.str(m, p, "platform"); ok && v != "" {
		if pl, err := v1.ParsePlatform(v); err != nil || pl.OS == "" || pl.Architecture == "" || !strings.Contains(v, "/") {
			d.fail(p+".platform", "%q is not os/arch[/variant]; write e.g. \"linux/arm64\"", v)
		} else {
			ct.Platform = v
		}
	}
	if v, ok := d.durationOrZero(m, p, "pin_ttl"); ok {
		ct.PinTTL = v
	}
	if v, ok := d.duration(m, p, "pin_timeout"); ok {
		ct.PinTimeout = v
	}
	if v, ok := d.duration(m, p, "pull_timeout"); ok {
		ct.PullTimeout = v
	}
	if v, ok := d.integer(m, p, "sshd_port", 1, 65535); ok {
		ct.SSHDPort = v
	}
	strs := map[string]*string{"network": &ct.Network, "ipc": &ct.IPC, "pid": &ct.PID, "shm_size": &ct.ShmSize}
	for k, dst := range strs {
		if v, ok := d.str(m, p, k); ok {
			*dst = v
		}
	}
	lists := map[string]*[]string{"devices": &ct.Devices, "volumes": &ct.Volumes, "cap_add": &ct.CapAdd,
		"security_opt": &ct.SecurityOpt, "group_add": &ct.GroupAdd, "ulimits": &ct.Ulimits}
	for k, dst := range lists {
		if v, ok := d.strList(m, p, k, false); ok {
			*dst = v
		}
	}
	for _, u := range ct.Ulimits {
		if name, val, ok := strings.Cut(u, "="); !ok || name == "" || val == "" {
			d.fail(p+".ulimits", "%q is not NAME=SOFT[:HARD], e.g. \"memlock=-1:-1\"", u)
		}
	}
	if v, ok := d.boolean(m, p, "privileged"); ok {
		ct.Privileged = v
	}
	ct.Env = d.env(m, p, "env")
	return ct
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c == '_' || c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func (d *decoder) checkSetupScript(path string) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.fail("container.setup_script", "%s does not exist; fix the path (relative paths start at the cluster file's folder) or leave setup_script out to use the packaged default", path)
	case err != nil:
		d.fail("container.setup_script", "%v", err)
	case !st.Mode().IsRegular():
		d.fail("container.setup_script", "%s is not a regular file", path)
	case st.Size() > MaxSetupScriptBytes:
		d.fail("container.setup_script", "%s is %d bytes, over the %d-byte (16 KiB) limit of the inline channel; move the bulk into the image or fetch it from the script", path, st.Size(), MaxSetupScriptBytes)
	}
}

// userSpec is docker exec -u's USER[:GROUP], by name or number.
var userSpec = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)

func (d *decoder) execUser(m map[string]any, prefix string) string {
	u, ok := d.str(m, prefix, "user")
	if ok && !userSpec.MatchString(u) {
		d.fail(join(prefix, "user"), "%q is not a user for docker exec -u: write NAME, UID, NAME:GROUP or UID:GID", u)
		return ""
	}
	return u
}

func (d *decoder) suites(raw map[string]any) []Suite {
	var out []Suite
	for _, nt := range d.namedTables(raw, "suites") {
		name, p, sm := nt.name, nt.path, nt.m
		if !suiteName.MatchString(name) {
			d.fail(p, "suite name %q must start with a letter or digit and hold only letters, digits, '_', '.', '-'", name)
		}
		d.checkKeys(sm, p, suiteKeys, nil)
		s := Suite{Name: name}
		s.Description, _ = d.str(sm, p, "description")
		s.User = d.execUser(sm, p)
		steps, ok := sm["steps"]
		if !ok {
			d.fail(p, "has no steps; add [[%s.steps]] tables with name and run", p)
			continue
		}
		list, isList := steps.([]map[string]any)
		if !isList {
			d.fail(p+".steps", "must be a list of tables ([[%s.steps]]), not %s", p, tomlType(steps))
			continue
		}
		seen := map[string]bool{}
		for i, sm := range list {
			sp := p + ".steps." + strconv.Itoa(i)
			d.checkKeys(sm, sp, stepKeys, nil)
			st := Step{On: DefaultStepOn, Timeout: DefaultStepTimeout}
			st.Name, _ = d.str(sm, sp, "name")
			if st.Name == "" {
				d.fail(sp, "step %d has no name", i+1)
			} else if seen[st.Name] {
				d.fail(sp+".name", "step name %q is used twice in suite %q", st.Name, name)
			}
			seen[st.Name] = true
			st.Run, _ = d.str(sm, sp, "run")
			if strings.TrimSpace(st.Run) == "" {
				d.fail(sp, "step %q has no run script", st.Name)
			} else if len(st.Run) > MaxStepScriptBytes {
				d.fail(sp+".run", "is %d bytes, over the %d-byte limit for a step script; put the bulk in a script file in the image or the overlay and call it", len(st.Run), MaxStepScriptBytes)
			}
			if v, ok := d.str(sm, sp, "on"); ok {
				switch On(v) {
				case OnAll, OnHead:
					st.On = On(v)
				default:
					d.fail(sp+".on", "%q is not \"all\" or \"head\"", v)
				}
			}
			if v, ok := d.duration(sm, sp, "timeout"); ok {
				st.Timeout = v
			}
			st.Env = d.env(sm, sp, "env")
			st.User = s.User
			if u := d.execUser(sm, sp); u != "" {
				st.User = u
			}
			s.Steps = append(s.Steps, st)
		}
		out = append(out, s)
	}
	return out
}

// sites reads the [sites.NAME] tables.
func (d *decoder) sites(raw map[string]any) []Site {
	var out []Site
	for _, nt := range d.namedTables(raw, "sites") {
		name, p, sm := nt.name, nt.path, nt.m
		d.checkKeys(sm, p, siteKeys, nil)
		site := Site{Name: name}
		im, ok := d.table(sm, p, "image")
		if !ok {
			out = append(out, site)
			continue
		}
		d.checkKeys(im, p+".image", []string{"rewrite"}, nil)
		rules, present := im["rewrite"]
		list, isList := rules.([]map[string]any)
		if present && !isList {
			d.fail(p+".image.rewrite", "must be a list of tables ([[%s.image.rewrite]]), not %s", p, tomlType(rules))
		}
		for i, rm := range list {
			rp := fmt.Sprintf("%s.image.rewrite.%d", p, i)
			d.checkKeys(rm, rp, rewriteKeys, nil)
			var r Rewrite
			r.Match, _ = d.str(rm, rp, "match")
			r.Replace, _ = d.str(rm, rp, "replace")
			switch {
			case r.Match == "":
				d.fail(rp, "rule %d has no match; write match = \"exact/reference:tag\" or match = 're:REGEX'", i+1)
				continue
			case strings.HasPrefix(r.Match, "re:"):
				expr := strings.TrimPrefix(r.Match, "re:")
				if _, err := regexp.Compile(expr); err != nil {
					d.fail(rp+".match", "%q is not a valid regular expression: %v", expr, err)
					continue
				}
				// The expression must match the whole reference.
				r.Regex = regexp.MustCompile("^(?:" + expr + ")$")
			}
			if _, present := rm["replace"]; !present {
				d.fail(rp, "rule %d has no replace", i+1)
				continue
			}
			site.Rewrites = append(site.Rewrites, r)
		}
		out = append(out, site)
	}
	return out
}

// applySite selects the site the options name and rewrites the image with
// its rules; the rewritten reference must be a valid one too.
func (d *decoder) applySite(c *Config) {
	c.Container.ConfiguredImage = c.Container.Image
	if d.site == "" {
		return
	}
	var names []string
	for _, s := range c.Sites {
		names = append(names, s.Name)
		if s.Name != d.site {
			continue
		}
		c.Site = s.Name
		if out, ok := s.Apply(c.Container.Image); ok {
			if _, err := name.ParseReference(out); err != nil || strings.HasPrefix(out, "-") {
				d.fail("sites."+s.Name, "a rewrite rule turns %q into %q, which is not an image reference", c.Container.Image, out)
				return
			}
			c.Container.Image = out
			return
		}
		// Selecting a site means the image should change there; a rule
		// that misses (a typo, a registry renamed) would otherwise run the
		// unreachable reference without a word.
		d.warnings = append(d.warnings, fmt.Sprintf("site %q: its %d image rewrite rule(s) match nothing; the image stays %s", s.Name, len(s.Rewrites), c.Container.Image))
		return
	}
	if len(names) == 0 {
		names = []string{"none: add [sites.NAME] tables"}
	}
	d.problem(0, "site", "site %q (from --site or $CVS_SITE) is not in the cluster file; sites: %s", d.site, strings.Join(names, ", "))
}

// engine reads [engine]: how cvs reaches the hosts.
func (d *decoder) engine(raw map[string]any) Engine {
	e := Engine{Kind: EngineSSH}
	m, ok := d.table(raw, "", "engine")
	if !ok {
		return e
	}
	d.checkKeys(m, "engine", engineKeys, nil)
	if v, ok := d.str(m, "engine", "kind"); ok {
		switch EngineKind(v) {
		case EngineSSH, EngineSlurm:
			e.Kind = EngineKind(v)
		default:
			d.fail("engine.kind", "%q is not one of \"ssh\" (the default: an SSH connection per host) or \"slurm\" (srun tasks on the nodes)", v)
		}
	}
	if v, ok := d.str(m, "engine", "srun"); ok {
		e.Srun = d.path(v)
	}
	if v, ok := d.boolean(m, "engine", "cleartext_secrets"); ok {
		e.CleartextSecrets = v
	}
	return e
}
