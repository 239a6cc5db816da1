package dockerapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// Login says how a host's pulls from a registry authenticate: the daemon
// keeps no credentials, the SSH user's Docker client configuration does.
type Login string

const (
	// LoginConfig: the configuration holds the credentials (docker login
	// without a helper); they travel with the API request, as the docker
	// CLI sends them (X-Registry-Auth).
	LoginConfig Login = "config"
	// LoginHelper: a credential helper (credsStore, credHelpers) holds
	// them; helpers run only on the host, so the host's docker CLI pulls.
	LoginHelper Login = "credential helper (CLI pull)"
	// LoginNone: no login for the registry; the pull is anonymous.
	LoginNone Login = "none"
)

// dockerConfigScript prints the SSH user's Docker client configuration
// (where the docker CLI reads it), nothing when there is none.
const dockerConfigScript = `f="${DOCKER_CONFIG:-$HOME/.docker}/config.json"; [ -r "$f" ] || exit 0; exec cat "$f"`

// dockerConfig is what cvs reads of a Docker client configuration.
type dockerConfig struct {
	Auths       map[string]registry.AuthConfig `json:"auths"`
	CredsStore  string                         `json:"credsStore"`
	CredHelpers map[string]string              `json:"credHelpers"`
}

// RegistryOf is the registry of image ref as docker keys its logins
// (index.docker.io for Docker Hub), "" when ref cannot be read.
func RegistryOf(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	return r.Context().RegistryStr()
}

// findLogin finds reg's credentials in a Docker client configuration, as
// the docker CLI does: a credential helper for reg, else the credential
// store, else the auths entry whose key names reg (with or without a
// scheme or path).
func findLogin(data []byte, reg string) (registry.AuthConfig, Login, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return registry.AuthConfig{}, LoginNone, nil
	}
	var c dockerConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return registry.AuthConfig{}, LoginNone, fmt.Errorf("the SSH user's Docker configuration cannot be read as JSON: %v", err)
	}
	hosts := []string{reg}
	if reg == name.DefaultRegistry {
		hosts = append(hosts, "docker.io", "registry-1.docker.io")
	}
	for _, h := range hosts {
		if c.CredHelpers[h] != "" {
			return registry.AuthConfig{}, LoginHelper, nil
		}
	}
	if c.CredsStore != "" {
		return registry.AuthConfig{}, LoginHelper, nil
	}
	for key, a := range c.Auths {
		k := strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
		k, _, _ = strings.Cut(k, "/")
		found := false
		for _, h := range hosts {
			found = found || k == h
		}
		if !found {
			continue
		}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return registry.AuthConfig{}, LoginNone, fmt.Errorf("the SSH user's Docker configuration: the login for %s cannot be decoded", key)
			}
			a.Username, a.Password, _ = strings.Cut(string(dec), ":")
			a.Auth = ""
		}
		if a.Username == "" && a.Password == "" && a.IdentityToken == "" && a.RegistryToken == "" {
			continue
		}
		a.ServerAddress = key
		return a, LoginConfig, nil
	}
	return registry.AuthConfig{}, LoginNone, nil
}

// encodeAuth is the X-Registry-Auth value of a: its JSON, base64url.
func encodeAuth(a registry.AuthConfig) (string, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// registryAuth reads, on the host, how its pulls of ref authenticate and,
// for LoginConfig, the X-Registry-Auth value. The credentials stay in this
// process's memory for the one request; they are never written or logged.
func (e *Engine) registryAuth(ctx context.Context, ref string) (string, Login, error) {
	if e.cli == nil {
		return "", LoginNone, nil
	}
	a, login, err := readLogin(ctx, e.cli.Host, ref)
	if err != nil || login != LoginConfig {
		return "", login, err
	}
	enc, err := encodeAuth(a)
	return enc, login, err
}

// readLogin reads, through r (a host's shell), the SSH user's Docker
// configuration and finds the login for ref's registry.
func readLogin(ctx context.Context, r transport.Runner, ref string) (registry.AuthConfig, Login, error) {
	res, err := r.Run(ctx, transport.Command{Line: shell.Join("sh", "-c", dockerConfigScript), Name: "reading the SSH user's Docker configuration"})
	if err != nil {
		return registry.AuthConfig{}, LoginNone, err
	}
	return findLogin(res.Stdout, RegistryOf(ref))
}

// HostLogin says how pulls of ref by the docker CLI on the host r reaches
// authenticate (its SSH user's Docker configuration); no credential
// leaves the call.
func HostLogin(ctx context.Context, r transport.Runner, ref string) (Login, error) {
	_, login, err := readLogin(ctx, r, ref)
	return login, err
}

// RegistryLogin says how the host's pulls of ref authenticate, for
// `cvs status`; it reads the host's Docker configuration each time.
func (e *Engine) RegistryLogin(ctx context.Context, ref string) (Login, error) {
	_, login, err := e.registryAuth(ctx, ref)
	return login, err
}

// CheckPull asks the daemon whether it could pull ref with the host's
// login, without pulling (the registry's answer about ref's manifest,
// DistributionInspect), so that a host that lacks a login is found before
// anything is launched anywhere. A host whose login is in a credential
// helper is not checked here (the daemon cannot use it).
func (e *Engine) CheckPull(ctx context.Context, ref string) error {
	auth, login, err := e.registryAuth(ctx, ref)
	if err != nil {
		return fmt.Errorf("reading the SSH user's Docker configuration: %w", err)
	}
	if login == LoginHelper {
		return nil
	}
	err = e.within(ctx, e.limit, "DistributionInspect "+ref, func(ctx context.Context) error {
		_, err := e.c.DistributionInspect(ctx, ref, client.DistributionInspectOptions{EncodedRegistryAuth: auth})
		return err
	})
	if err == nil || ctx.Err() != nil {
		return err
	}
	if isAuth(err) {
		return e.authError(ref, login, err)
	}
	return err
}

// authError is a registry's refusal of the host's pull of ref, saying
// what to do.
func (e *Engine) authError(ref string, login Login, err error) *transport.ExitError {
	reg := RegistryOf(ref)
	what := "has no login for " + reg
	if login == LoginConfig {
		what = "has a login for " + reg + " that the registry refused"
	}
	msg := fmt.Sprintf("Unable to pull %s: %v\nthe host's SSH user %s: run `docker login %s` there as that user", ref, err, what, reg)
	return &transport.ExitError{Host: e.host, Cmd: "docker pull " + ref, Code: 125, StderrTail: msg}
}
