package session

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/dockerapi"
	"github.com/cvs-tool/cvs/transport"
)

// Kinds of docker_access failures.
const (
	// KindDockerAPI: docker_access = "api" and the host's Engine API
	// cannot be used through the SSH connection.
	KindDockerAPI transport.Kind = "docker-api"
)

// probeHost probes host i, choosing how cvs talks to its Docker daemon
// for the rest of this invocation (docker_access): the Engine API through
// the SSH connection where its socket opens, else the docker CLI. The
// choice and, where the API is not used, the reason are in the facts.
func (s *Session) probeHost(ctx context.Context, h cluster.Host, c transport.Conn, spec docker.ProbeSpec) docker.Facts {
	access := s.Config.DockerAccess
	e, version, note, err := s.openAPI(ctx, h, c)
	if e != nil {
		f := docker.ProbeAnswered(ctx, c, h.Name, spec, e.Answers(ctx, version, spec))
		f.DockerAccess = "api"
		return f
	}
	var de *dockerapi.DaemonError
	if errors.As(err, &de) {
		// The socket opened and the daemon did not answer: a hung daemon,
		// which the CLI would wait for too.
		f := docker.Unknown(h.Name, spec, de.Err)
		f.Reachable, f.DockerPresent, f.DockerAccess = true, true, "api"
		return f
	}
	if access == cluster.DockerAccessAPI {
		return apiRequired(h, spec, note)
	}
	f := docker.Probe(ctx, c, h.Name, spec)
	f.DockerAccess, f.DockerAccessNote = "cli", note
	// A rootless daemon: DOCKER_HOST in the SSH session names its socket.
	if sock, ok := strings.CutPrefix(f.HostFacts.DockerHost, "unix://"); ok && f.Error == "" && access == cluster.DockerAccessAuto && !s.Config.Sudo && sock != s.socket() {
		if ud, ok := c.(transport.UnixDialer); ok {
			if e, _, err := dockerapi.Open(ctx, ud, h.Name, sock); err == nil {
				s.setEngine(h.Name, e.WithCLI(docker.CLIEngine{CLI: s.docker, Host: c}))
				f.DockerAccess, f.DockerAccessNote = "api", ""
			}
		}
	}
	return f
}

// openAPI opens host's Engine API when docker_access allows it and its
// socket opens, and makes it how cvs acts on that host; else it says why
// not.
func (s *Session) openAPI(ctx context.Context, h cluster.Host, c transport.Conn) (e *dockerapi.Engine, version, note string, err error) {
	switch {
	case s.Config.DockerAccess == cluster.DockerAccessCLI:
		return nil, "", `docker_access = "cli"`, nil
	case s.Config.DockerAccess == cluster.DockerAccessAuto && s.Config.Sudo:
		return nil, "", "sudo = true: the docker CLI runs through sudo -n", nil
	}
	ud, ok := c.(transport.UnixDialer)
	switch {
	case s.Config.Engine.Kind == cluster.EngineSlurm:
		return nil, "", `[engine] kind = "slurm": no SSH connection to forward the daemon's socket through`, nil
	case !ok:
		return nil, "", "this connection cannot forward a Unix socket", nil
	}
	e, version, err = dockerapi.Open(ctx, ud, h.Name, s.socket())
	if err != nil {
		return nil, "", err.Error(), err
	}
	e.WithCLI(docker.CLIEngine{CLI: s.docker, Host: c})
	s.setEngine(h.Name, e)
	return e, version, "", nil
}

// socket is the daemon's socket on the hosts (docker_socket).
func (s *Session) socket() string {
	if s.Config.DockerSocket != "" {
		return s.Config.DockerSocket
	}
	return cluster.DefaultDockerSocket
}

// apiRequired is the facts of a host where docker_access = "api" and the
// API cannot be used.
func apiRequired(h cluster.Host, spec docker.ProbeSpec, why string) docker.Facts {
	f := docker.Unknown(h.Name, spec, fmt.Errorf("docker_access = \"api\", but the Docker API cannot be used: %s; let cvs fall back to the docker CLI (docker_access = \"auto\"), or give the SSH user the docker socket (the docker group)", why))
	f.Reachable, f.ErrorKind = true, KindDockerAPI
	return f
}

// setEngine makes e how cvs talks to host's daemon.
func (s *Session) setEngine(host string, e *dockerapi.Engine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engines == nil {
		s.engines = map[string]*dockerapi.Engine{}
	}
	if old := s.engines[host]; old != nil {
		old.Close()
	}
	s.engines[host] = e
}

// dockerOn is how cvs acts on host's Docker daemon: the Engine API where
// the probe chose it, else the docker CLI over c.
func (s *Session) dockerOn(host string, c transport.Conn) docker.Engine {
	s.mu.Lock()
	e := s.engines[host]
	s.mu.Unlock()
	if e != nil {
		return e
	}
	return docker.CLIEngine{CLI: s.docker, Host: c}
}

// closeEngines closes every Engine API connection.
func (s *Session) closeEngines() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.engines {
		e.Close()
	}
	s.engines = nil
}
