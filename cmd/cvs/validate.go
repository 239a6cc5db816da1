package main

import (
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
)

func (a *app) validateCommand() *cobra.Command {
	var showSecrets bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the cluster file and print the effective configuration",
		Long: `validate loads the cluster file strictly and prints the effective
configuration: hosts expanded and fully pinned, defaults filled in. The output
is itself a valid cluster file. The values of [env], [container.env] and
the steps' env are shown as <redacted> (terminals and CI logs keep what they
show) unless --show-secrets. Every problem of the file is listed at once,
with its line; the exit code is then 2. No host is contacted.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			eff := cfg.Effective()
			if !showSecrets {
				eff = eff.Redacted()
			}
			if a.json {
				return a.printJSON(map[string]any{"file": cfg.File, "valid": true, "hosts": len(cfg.Hosts), "config": eff,
					"resolved_hosts": cfg.Hosts})
			}
			script := cfg.Container.SetupScript
			switch script {
			case "":
				script = "the packaged default (assets/setup_openssh.sh)"
			case "none":
				script = "none (fresh containers are not provisioned)"
			}
			fmt.Fprintf(a.stdout, "# %s is valid: %d host(s), lifetime %s, %d suite(s)\n# setup script: %s\n",
				cfg.File, len(cfg.Hosts), cfg.Container.Lifetime, len(cfg.Suites), script)
			if cfg.Site != "" {
				fmt.Fprintf(a.stdout, "# site %s: image %s → %s\n", cfg.Site, cfg.Container.ConfiguredImage, cfg.Container.Image)
			}
			if len(cfg.IdentityFiles) == 0 {
				fmt.Fprintln(a.stdout, "# identity_file: none set: ~/.ssh/config's IdentityFile, then ssh-agent keys (SSH_AUTH_SOCK); without either, ~/.ssh/id_ed25519, id_ecdsa, id_rsa")
			}
			// Settings a host takes from ~/.ssh/config cannot be written in
			// the hosts list: show them here.
			for _, h := range cfg.Hosts {
				if h.ProxyJump != cfg.ProxyJump || strings.Join(h.IdentityFiles, ",") != strings.Join(cfg.IdentityFiles, ",") {
					fmt.Fprintf(a.stdout, "# %s (from ~/.ssh/config): %s", h.Name, h.Pinned())
					if len(h.IdentityFiles) > 0 {
						fmt.Fprintf(a.stdout, " identity_file=%s", strings.Join(h.IdentityFiles, ","))
					}
					if h.ProxyJump != "" {
						fmt.Fprintf(a.stdout, " proxy_jump=%s", h.ProxyJump)
					}
					fmt.Fprintln(a.stdout)
				}
			}
			if !showSecrets {
				fmt.Fprintln(a.stdout, "# environment values are <redacted>; cvs validate --show-secrets prints them")
			}
			return toml.NewEncoder(a.stdout).Encode(eff)
		},
	}
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "print the values of [env], [container.env] and steps' env")
	return cmd
}
