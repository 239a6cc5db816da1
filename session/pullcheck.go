package session

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/dockerapi"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/transport"
)

// checkPulls finds, before anything is launched anywhere, the hosts that
// will pull the image and may not: over the Engine API, the registry's
// answer about the image through the host's daemon with the host's login
// (no download); through the docker CLI, a host whose SSH user has no
// login for a registry that refuses this machine's anonymous request. A
// host found fails the launch stage with nothing launched on the others.
// Hosts whose login is in a credential helper, and CLI hosts under sudo
// (the CLI reads root's login there), are left to their pull, as are
// other failures.
func (s *Session) checkPulls(ctx context.Context) error {
	ct := s.Config.Container
	if ct.Distribute == cluster.DistributePush || s.Config.Engine.Kind == cluster.EngineSlurm {
		return nil
	}
	var hosts []cluster.Host
	for i, hp := range s.Plan.Hosts {
		if (hp.Action == lifetime.Launch || hp.Action == lifetime.Replace) && hp.Image == "" {
			hosts = append(hosts, s.Config.Hosts[i])
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	// Whether the registry wants a login at all, asked once.
	needsLogin := sync.OnceValue(func() bool {
		need, _ := images.NeedsLogin(ctx, s.Image, ct.PinTimeout)
		return need
	})
	return s.perHost(ctx, "launch", hosts, func(ctx context.Context, _ int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		if id, err := s.dockerOn(h.Name, c).ImageID(ctx, s.Image); err != nil || id != "" {
			return transport.Result{}, nil
		}
		if e := s.apiEngine(h.Name); e != nil {
			err := e.CheckPull(ctx, s.Image)
			var xe *transport.ExitError
			if errors.As(err, &xe) {
				return transport.Result{}, err
			}
			return transport.Result{}, nil
		}
		if s.Config.Sudo {
			return transport.Result{}, nil
		}
		login, err := dockerapi.HostLogin(ctx, c, s.Image)
		if err != nil || login != dockerapi.LoginNone || !needsLogin() {
			return transport.Result{}, nil
		}
		reg := dockerapi.RegistryOf(s.Image)
		return transport.Result{}, fmt.Errorf("pulling %s: the host's SSH user has no login for %s, which refuses anonymous pulls: run `docker login %s` there as that user", s.Image, reg, reg)
	})
}

// apiEngine is host's Engine API, nil where cvs uses the docker CLI.
func (s *Session) apiEngine(host string) *dockerapi.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.engines[host]
}

// registryLogins says, per host, how its pulls of the image authenticate
// (dockerapi.Login; "docker CLI" where the CLI pulls with the host's own
// login), for `cvs status`; nil when the hosts do not pull it.
func (s *Session) registryLogins(ctx context.Context) map[string]string {
	ct := s.Config.Container
	if ct.Image == "" || ct.Distribute == cluster.DistributePush || ct.Lifetime == cluster.LifetimeNoLaunch {
		return nil
	}
	out := make([]string, len(s.Config.Hosts))
	var api []cluster.Host
	var at []int
	for i, h := range s.Config.Hosts {
		if s.apiEngine(h.Name) == nil {
			out[i] = "docker CLI"
			continue
		}
		api, at = append(api, h), append(at, i)
	}
	if len(api) > 0 {
		s.each(ctx, "", api, func(ctx context.Context, k int, h cluster.Host, _ transport.Conn) error {
			login, err := s.apiEngine(h.Name).RegistryLogin(ctx, ct.Image)
			if err == nil {
				out[at[k]] = string(login)
			}
			return err
		})
	}
	m := map[string]string{}
	for i, h := range s.Config.Hosts {
		if out[i] != "" {
			m[h.Name] = out[i]
		}
	}
	return m
}
