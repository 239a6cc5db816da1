package main

import (
	"context"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/provision"
	"github.com/cvs-tool/cvs/sshd"
	"github.com/cvs-tool/cvs/transport"
)

// provisionTimeout bounds the setup script in one container: installing
// packages on a cold node can take a while, but never forever.
const provisionTimeout = 30 * time.Minute

// lifetimeEnv wires the provisioning and sshd packages into lifetime.Apply.
func (a *app) lifetimeEnv(cfg *cluster.Config, f *fleet.Fleet) (lifetime.Env, error) {
	script, err := provision.Script(cfg.Container.SetupScript)
	if err != nil {
		return lifetime.Env{}, err
	}
	env := lifetime.Env{Fleet: f, Config: cfg, Log: a.log, Version: version, RunID: newRunID()}
	env.Provision = func(ctx context.Context, c transport.Conn, h cluster.Host) (transport.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
		defer cancel()
		return provision.Run(ctx, c, h.Name, cfg.Sudo, cfg.Container.Name, script)
	}
	env.StartSSHD = func(ctx context.Context, c transport.Conn, h cluster.Host) (bool, error) {
		return a.startSSHD(ctx, cfg, c, h)
	}
	return env, nil
}

// sshdTimeout bounds making sure sshd runs in one container.
const sshdTimeout = 2 * time.Minute

// startSSHD makes sure sshd listens in h's container, with the cluster's
// key pair (created on first use, kept on this machine).
func (a *app) startSSHD(ctx context.Context, cfg *cluster.Config, c transport.Conn, h cluster.Host) (bool, error) {
	a.keysOnce.Do(func() {
		dir, err := sshd.Dir(cfg.File)
		if err != nil {
			a.keysErr = err
			return
		}
		a.keys, a.keysErr = sshd.LoadOrCreate(dir)
	})
	if a.keysErr != nil {
		return false, a.keysErr
	}
	ctx, cancel := context.WithTimeout(ctx, sshdTimeout)
	defer cancel()
	out, err := sshd.Ensure(ctx, c, h.Name, cfg.Sudo, cfg.Container.Name, cfg.Container.SSHDPort, a.keys)
	return out.AlreadyListening, err
}
