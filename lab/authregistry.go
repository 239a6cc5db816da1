package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// authRegistryPort is where the registry that wants a login listens, on
// the bridge gateway next to the open one.
const authRegistryPort = 5001

// AuthRegistryUser is the one account of the authenticated registry.
const AuthRegistryUser = "cvs-lab"

// RegistryLogin is the authenticated registry and its account. Password is
// a secret: it travels on standard input or in 0600 files, never in a
// command line.
type RegistryLogin struct {
	Registry string // host:port, as image references use it
	User     string
	Password string
}

// AuthRegistry returns the host:port of the registry that wants a login.
func (l *Lab) AuthRegistry() string {
	return l.Gateway().String() + ":" + strconv.Itoa(authRegistryPort)
}

// AuthWorkloadImage is WorkloadImage through the authenticated registry.
func (l *Lab) AuthWorkloadImage() string { return l.AuthRegistry() + "/" + workloadRepo + ":1" }

func (l *Lab) authRegistryFiles() (conf, htpasswd, password, pid string) {
	r := l.paths.run
	return filepath.Join(r, "registry-auth.yml"), filepath.Join(r, "registry-auth.htpasswd"),
		filepath.Join(r, "registry-auth.password"), filepath.Join(r, "registry-auth.pid")
}

// authRegistryConfig is the open registry's config with htpasswd
// authentication, over the same storage: every image pushed to the lab
// registry is there too, and only a login reads it. Plain HTTP: the hosts'
// dockerd trusts the gateway address over HTTP on every port (see
// startHost) and sends the credentials there as it would over TLS.
func (l *Lab) authRegistryConfig(htpasswd string) string {
	return fmt.Sprintf(`# Written by cvs-lab; the lab's registry that wants a login.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: cvs-lab-auth-%s
auth:
  htpasswd:
    realm: cvs-lab
    path: %s
`, l.paths.registryData, l.AuthRegistry(), l.id, htpasswd)
}

// StartAuthRegistry starts, unless it runs, a registry that serves the lab
// registry's images to a login only (the Debian docker-registry with an
// htpasswd file; read-only), and returns its account. The password is made
// once per lab run and kept in a 0600 file of the lab's run folder.
func (l *Lab) StartAuthRegistry(ctx context.Context) (RegistryLogin, error) {
	conf, htpasswd, pwFile, pidFile := l.authRegistryFiles()
	login := RegistryLogin{Registry: l.AuthRegistry(), User: AuthRegistryUser}
	pw, err := os.ReadFile(pwFile)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 18)
		rand.Read(b)
		pw = []byte(hex.EncodeToString(b))
		if err := writeFileAtomic(pwFile, pw, 0o600); err != nil {
			return login, err
		}
	} else if err != nil {
		return login, err
	}
	login.Password = string(pw)
	pid, _ := readPID(pidFile)
	if !procAlive(pid, conf) {
		hash, err := bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
		if err != nil {
			return login, err
		}
		if err := writeFileAtomic(htpasswd, []byte(login.User+":"+string(hash)+"\n"), 0o600); err != nil {
			return login, err
		}
		if err := os.MkdirAll(l.paths.registryData, 0o755); err != nil {
			return login, err
		}
		if err := writeFileAtomic(conf, []byte(l.authRegistryConfig(htpasswd)), 0o644); err != nil {
			return login, err
		}
		os.Remove(pidFile)
		logPath := filepath.Join(l.paths.logs, "registry-auth.log")
		if err := startDetached(ctx, pidFile, logPath, "docker-registry", "serve", conf); err != nil {
			return login, err
		}
	}
	return login, l.waitAuthRegistry(ctx, 20*time.Second)
}

// StopAuthRegistry stops the authenticated registry, if it runs.
func (l *Lab) StopAuthRegistry(ctx context.Context) error {
	conf, _, _, pidFile := l.authRegistryFiles()
	pid, _ := readPID(pidFile)
	if err := stopPID(ctx, pid, conf, 10*time.Second); err != nil {
		return fmt.Errorf("stop lab authenticated registry: %w", err)
	}
	os.Remove(pidFile)
	return nil
}

// waitAuthRegistry polls the API base until it asks for a login (401 with
// a Basic challenge), which is its way of answering.
func (l *Lab) waitAuthRegistry(ctx context.Context, timeout time.Duration) error {
	err := pollRegistry(ctx, l.AuthRegistry(), timeout, func(r *http.Response) bool {
		return r.StatusCode == http.StatusUnauthorized && strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic")
	}, nil)
	if err != nil {
		return fmt.Errorf("lab authenticated registry at %s does not answer: %v (log: %s)", l.AuthRegistry(), err,
			tailFile(filepath.Join(l.paths.logs, "registry-auth.log"), 800))
	}
	return nil
}

// LoginHosts logs the SSH user (root) of each host in to login's registry
// with `docker login --password-stdin`: the password reaches the host's
// docker CLI on standard input, and it keeps it in the user's
// ~/.docker/config.json as docker does.
func (l *Lab) LoginHosts(ctx context.Context, login RegistryLogin, hosts ...string) error {
	for _, name := range hosts {
		h, err := l.Host(name)
		if err != nil {
			return err
		}
		if _, err := l.dk.exec(ctx, h, strings.NewReader(login.Password), "docker", "login", "--username", login.User, "--password-stdin", login.Registry); err != nil {
			return fmt.Errorf("docker login on %s: %w", name, err)
		}
	}
	return nil
}

// LogoutHosts removes each host's login to registry (docker logout).
func (l *Lab) LogoutHosts(ctx context.Context, registry string, hosts ...string) error {
	for _, name := range hosts {
		if _, err := l.HostDocker(ctx, name, "logout", registry); err != nil {
			return fmt.Errorf("docker logout on %s: %w", name, err)
		}
	}
	return nil
}

// WriteDockerConfig writes dir/config.json (0600, dir 0700), a Docker
// client configuration that holds login's credentials as `docker login`
// stores them without a credential helper: a controller's DOCKER_CONFIG.
func WriteDockerConfig(dir string, login RegistryLogin) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	auth := base64.StdEncoding.EncodeToString([]byte(login.User + ":" + login.Password))
	data, err := json.Marshal(map[string]any{"auths": map[string]any{login.Registry: map[string]string{"auth": auth}}})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), data, 0o600)
}
