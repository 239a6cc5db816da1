package main

import (
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
)

func (a *app) validateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the cluster file and print the effective configuration",
		Long: `validate loads the cluster file strictly and prints the effective
configuration: hosts expanded and fully pinned, defaults filled in. The output
is itself a valid cluster file. Every problem of the file is listed at once,
with its line; the exit code is then 2. No host is contacted.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			eff := cfg.Effective()
			if a.json {
				return a.printJSON(map[string]any{"file": cfg.File, "valid": true, "hosts": len(cfg.Hosts), "config": eff})
			}
			script := cfg.Container.SetupScript
			if script == "" {
				script = "the packaged default (assets/setup_openssh.sh)"
			}
			fmt.Fprintf(a.stdout, "# %s is valid: %d host(s), lifetime %s, %d suite(s)\n# setup script: %s\n",
				cfg.File, len(cfg.Hosts), cfg.Container.Lifetime, len(cfg.Suites), script)
			return toml.NewEncoder(a.stdout).Encode(eff)
		},
	}
}
