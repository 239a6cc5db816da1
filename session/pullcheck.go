package session

import (
	"context"
	"errors"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/dockerapi"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/transport"
)

// checkPulls asks, before anything is launched anywhere, whether each
// host that will pull the image may: the registry's answer about the
// image through the host's daemon, with the host's login (over the Engine
// API), without pulling. A host the registry refuses fails the launch
// stage with nothing launched on the others. Hosts driven through the
// docker CLI, and hosts whose login is in a credential helper, are not
// checked (their pull says it); other failures are left to the pull.
func (s *Session) checkPulls(ctx context.Context) error {
	if s.Config.Container.Distribute == cluster.DistributePush || s.Config.Engine.Kind == cluster.EngineSlurm {
		return nil
	}
	var hosts []cluster.Host
	for i, hp := range s.Plan.Hosts {
		if (hp.Action == lifetime.Launch || hp.Action == lifetime.Replace) && hp.Image == "" && s.apiEngine(s.Config.Hosts[i].Name) != nil {
			hosts = append(hosts, s.Config.Hosts[i])
		}
	}
	if len(hosts) == 0 {
		return nil
	}
	return s.perHost(ctx, "launch", hosts, func(ctx context.Context, _ int, h cluster.Host, _ transport.Conn) (transport.Result, error) {
		e := s.apiEngine(h.Name)
		if id, err := e.ImageID(ctx, s.Image); err != nil || id != "" {
			return transport.Result{}, nil
		}
		err := e.CheckPull(ctx, s.Image)
		var xe *transport.ExitError
		if errors.As(err, &xe) {
			return transport.Result{}, err
		}
		return transport.Result{}, nil
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
