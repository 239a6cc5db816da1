package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// sshConfig is the operator's ~/.ssh/config, consulted for what the cluster
// file does not pin. The parser is github.com/kevinburke/ssh_config: Host
// patterns, negation and Include are fiddly enough not to rewrite.
type sshConfig struct {
	cfg  *ssh_config.Config
	path string
}

type sshHostSettings struct {
	hostName, user, proxyJump string
	port                      int
	identityFiles             []string
}

func loadSSHConfig(path, home string) (*sshConfig, error) {
	if path == "none" {
		return &sshConfig{}, nil
	}
	explicit := path != ""
	if !explicit {
		path = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return &sshConfig{}, nil
		}
		return nil, fmt.Errorf("ssh config %s: %w", path, err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w (fix it, or the cluster file's hosts cannot be resolved as ssh would)", path, err)
	}
	return &sshConfig{cfg: cfg, path: path}, nil
}

func (s *sshConfig) lookup(alias string) sshHostSettings {
	var out sshHostSettings
	if s == nil || s.cfg == nil {
		return out
	}
	get := func(k string) string {
		v, _ := s.cfg.Get(alias, k)
		return strings.TrimSpace(v)
	}
	if hn := get("HostName"); hn != "" {
		out.hostName = strings.ReplaceAll(hn, "%h", alias)
	}
	out.user = get("User")
	if p, err := strconv.Atoi(get("Port")); err == nil {
		out.port = p
	}
	out.proxyJump = get("ProxyJump")
	ids, _ := s.cfg.GetAll(alias, "IdentityFile")
	out.identityFiles = ids
	return out
}
