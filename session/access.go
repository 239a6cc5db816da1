package session

import (
	"context"
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
func (s *Session) probeHost(ctx context.Context, i int, h cluster.Host, c transport.Conn, spec docker.ProbeSpec) docker.Facts {
	access := s.Config.DockerAccess
	note := ""
	switch {
	case access == cluster.DockerAccessCLI:
		note = `docker_access = "cli"`
	case access == cluster.DockerAccessAuto && s.Config.Sudo:
		note = "sudo = true: the docker CLI runs through sudo -n"
	default:
		ud, ok := c.(transport.UnixDialer)
		if !ok {
			note = "this connection cannot forward a Unix socket"
			break
		}
		e, version, err := dockerapi.Open(ctx, ud, h.Name, dockerapi.DefaultSocket)
		if err == nil {
			s.setEngine(i, e)
			f := docker.ProbeAnswered(ctx, c, h.Name, spec, e.Answers(ctx, version, spec))
			f.DockerAccess = "api"
			return f
		}
		note = err.Error()
	}
	if access == cluster.DockerAccessAPI {
		f := docker.Unknown(h.Name, spec, fmt.Errorf("docker_access = \"api\", but the Docker API cannot be used: %s; let cvs fall back to the docker CLI (docker_access = \"auto\"), or give the SSH user the docker socket (the docker group)", note))
		f.Reachable, f.ErrorKind = true, KindDockerAPI
		return f
	}
	f := docker.Probe(ctx, c, h.Name, spec)
	f.DockerAccess, f.DockerAccessNote = "cli", note
	// A rootless daemon: DOCKER_HOST in the SSH session names its socket.
	if sock, ok := strings.CutPrefix(f.HostFacts.DockerHost, "unix://"); ok && f.Error == "" && access == cluster.DockerAccessAuto && !s.Config.Sudo && sock != dockerapi.DefaultSocket {
		if ud, ok := c.(transport.UnixDialer); ok {
			if e, _, err := dockerapi.Open(ctx, ud, h.Name, sock); err == nil {
				s.setEngine(i, e)
				f.DockerAccess, f.DockerAccessNote = "api", ""
			}
		}
	}
	return f
}

// setEngine makes e how cvs talks to host i's daemon.
func (s *Session) setEngine(i int, e *dockerapi.Engine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engines == nil {
		s.engines = make([]*dockerapi.Engine, len(s.Config.Hosts))
	}
	if old := s.engines[i]; old != nil {
		old.Close()
	}
	s.engines[i] = e
}

// engine is host i's Engine API, nil where cvs uses the docker CLI.
func (s *Session) engine(i int) *dockerapi.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engines == nil {
		return nil
	}
	return s.engines[i]
}

// closeEngines closes every Engine API connection.
func (s *Session) closeEngines() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.engines {
		if e != nil {
			e.Close()
		}
	}
	s.engines = nil
}
