package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

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
	file     string
	dir      string
	home     string
	user     string // the operator's login name, for {user-id}
	sshCfg   *sshConfig
	lines    keyLines
	problems []Problem
}

func newDecoder(abs string, opts LoadOptions) (*decoder, error) {
	d := &decoder{file: abs, dir: filepath.Dir(abs), home: opts.Home, user: opts.CurrentUser}
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

// displayKey drops array indices from a path for messages:
// suites.test.steps.1.run is shown as suites.test.steps[1].run.
func displayKey(path string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// Known keys per table; an unknown key is a problem with a suggestion.
var (
	topKeys = []string{"user", "identity_file", "port", "known_hosts", "host_key_check",
		"connect_timeout", "command_timeout", "keepalive_interval", "max_parallel",
		"proxy_jump", "head", "sudo", "hosts", "env", "container", "suites"}
	containerKeys = []string{"lifetime", "image", "name", "setup_script", "pull_timeout",
		"sshd_port", "network", "ipc", "pid", "privileged", "devices", "volumes", "cap_add",
		"security_opt", "group_add", "shm_size", "ulimits", "env"}
	suiteKeys = []string{"description", "steps"}
	stepKeys  = []string{"name", "run", "on", "timeout", "env"}
)

// legacy keys are never mapped silently: each gets a migration message.
var legacyContainerKeys = map[string]string{
	"enabled": `was removed; write lifetime = "per_run" (cvs launches and removes the container each run), "persistent" (install once, attach on later runs) or "no_launch" (you run the container yourself)`,
	"launch":  `was removed; launch = true is now lifetime = "per_run", launch = false is now lifetime = "no_launch" (use "persistent" to keep containers between runs)`,
}

func (d *decoder) checkKeys(m map[string]any, prefix string, known []string, legacy map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if msg, ok := legacy[k]; ok {
			d.fail(join(prefix, k), "%s", msg)
			continue
		}
		if contains(known, k) {
			continue
		}
		msg := "unknown key"
		if s := closest(k, known); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; valid keys here: " + strings.Join(known, ", ")
		}
		d.fail(join(prefix, k), "%s", msg)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *decoder) expand(s string) string { return strings.ReplaceAll(s, UserPlaceholder, d.user) }

func (d *decoder) str(m map[string]any, prefix, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		d.fail(join(prefix, key), "must be a string, not %s", tomlType(v))
		return "", false
	}
	return d.expand(s), true
}

// strList accepts one string or a list of strings.
func (d *decoder) strList(m map[string]any, prefix, key string, single bool) ([]string, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	if s, isStr := v.(string); isStr && single {
		return []string{d.expand(s)}, true
	}
	list, isList := v.([]any)
	if !isList {
		want := "a list of strings"
		if single {
			want = "a string or a list of strings"
		}
		d.fail(join(prefix, key), "must be %s, not %s", want, tomlType(v))
		return nil, false
	}
	out := make([]string, 0, len(list))
	for i, it := range list {
		s, isStr := it.(string)
		if !isStr {
			d.fail(join(prefix, key), "item %d must be a string, not %s", i+1, tomlType(it))
			continue
		}
		out = append(out, d.expand(s))
	}
	return out, true
}

func (d *decoder) integer(m map[string]any, prefix, key string, lo, hi int64) (int, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	n, isInt := v.(int64)
	if !isInt {
		d.fail(join(prefix, key), "must be an integer, not %s", tomlType(v))
		return 0, false
	}
	if n < lo || n > hi {
		d.fail(join(prefix, key), "%d is out of range %d to %d", n, lo, hi)
		return 0, false
	}
	return int(n), true
}

func (d *decoder) boolean(m map[string]any, prefix, key string) (bool, bool) {
	v, ok := m[key]
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		d.fail(join(prefix, key), "must be true or false, not %s", tomlType(v))
		return false, false
	}
	return b, true
}

func (d *decoder) duration(m map[string]any, prefix, key string) (time.Duration, bool) {
	s, ok := d.str(m, prefix, key)
	if !ok {
		if _, present := m[key]; present {
			return 0, false // str already reported the type
		}
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		d.fail(join(prefix, key), "%q is not a positive duration; write e.g. \"30s\", \"15m\" or \"1h30m\"", s)
		return 0, false
	}
	return v, true
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) env(m map[string]any, prefix, key string) map[string]string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	t, isTable := v.(map[string]any)
	if !isTable {
		d.fail(join(prefix, key), "must be a table of NAME = \"value\", not %s", tomlType(v))
		return nil
	}
	out := make(map[string]string, len(t))
	for k, val := range t {
		path := join(join(prefix, key), k)
		if !envName.MatchString(k) {
			d.fail(path, "%q is not a valid environment variable name", k)
			continue
		}
		s, isStr := val.(string)
		if !isStr {
			d.fail(path, "must be a string, not %s (quote numbers: \"1\")", tomlType(val))
			continue
		}
		if strings.ContainsAny(s, "\n\r\x00") {
			// An env file has one variable a line: a newline would cut the
			// value and could smuggle in another variable.
			d.fail(path, "must be a single line (no newline or NUL characters)")
			continue
		}
		out[k] = d.expand(s)
	}
	return out
}

func (d *decoder) table(m map[string]any, prefix, key string) (map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	t, isTable := v.(map[string]any)
	if !isTable {
		d.fail(join(prefix, key), "must be a table ([%s]), not %s", join(prefix, key), tomlType(v))
		return nil, false
	}
	return t, true
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// path resolves a file name from the cluster file: "~" is the home
// directory, a relative path is relative to the cluster file's folder.
func (d *decoder) path(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(d.home, p[1:])
	}
	if !filepath.IsAbs(p) {
		return filepath.Join(d.dir, p)
	}
	return filepath.Clean(p)
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
	if v, ok := d.str(raw, "", "proxy_jump"); ok && v != "" {
		if specs, err := parseHostEntry(v); err != nil || len(specs) != 1 {
			d.fail("proxy_jump", "%q is not one [user@]host[:port]", v)
		}
		c.ProxyJump = v
	}
	if v, ok := d.boolean(raw, "", "sudo"); ok {
		c.Sudo = v
	}
	c.Env = d.env(raw, "", "env")

	d.hosts(raw, c, userSet, portSet)
	c.Container = d.container(raw)
	c.Suites = d.suites(raw)
	return c
}

func (d *decoder) hosts(raw map[string]any, c *Config, userSet, portSet bool) {
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
	return h
}

var (
	dockerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	suiteName  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
)

func (d *decoder) container(raw map[string]any) Container {
	ct := Container{Lifetime: DefaultLifetime, PullTimeout: DefaultPullTimeout, SSHDPort: DefaultSSHDPort}
	m, ok := d.table(raw, "", "container")
	if !ok {
		ct.Name = "cvs-" + sanitizeName(d.user)
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
		if v == "" || strings.ContainsAny(v, " \t\n") || strings.HasPrefix(v, "-") {
			d.fail(p+".image", "%q is not an image reference; write e.g. \"registry:5000/team/image:tag\"", v)
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
	if v, ok := d.str(m, p, "setup_script"); ok && v != "" {
		ct.SetupScript = d.path(v)
		d.checkSetupScript(ct.SetupScript)
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

func (d *decoder) suites(raw map[string]any) []Suite {
	m, ok := d.table(raw, "", "suites")
	if !ok {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []Suite
	for _, name := range names {
		p := "suites." + name
		sm, ok := d.table(m, "suites", name)
		if !ok {
			continue
		}
		if !suiteName.MatchString(name) {
			d.fail(p, "suite name %q must start with a letter or digit and hold only letters, digits, '_', '.', '-'", name)
		}
		d.checkKeys(sm, p, suiteKeys, nil)
		s := Suite{Name: name}
		s.Description, _ = d.str(sm, p, "description")
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
			s.Steps = append(s.Steps, st)
		}
		out = append(out, s)
	}
	return out
}
