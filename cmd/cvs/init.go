package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) initCommand() *cobra.Command {
	var hosts, usr, identity, knownHosts, image, name, out string
	var force, yes bool
	cmd := &cobra.Command{
		Use:   "init --hosts LIST [--user U] [--image REF] [-o cluster.toml]",
		Short: "Write a cluster file for your hosts and record their SSH host keys",
		Long: `init writes a commented cluster file for the hosts given (names, addresses
or ranges in Slurm's hostlist syntax, comma-separated), asks every host for its
SSH host keys (as ssh-keyscan: no login; a host behind a proxy_jump bastion
through that bastion, which known_hosts must already list), shows their
fingerprints, and adds the ones known_hosts does not list yet to it after
you confirm (--yes for scripts; required without a terminal). A key that differs from the one
known_hosts lists is shown as a MISMATCH and never written. It never
overwrites an existing file without --force.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hosts == "" {
				return &flagError{errors.New("init needs --hosts, e.g. --hosts 'node[01-08]'")}
			}
			if _, err := os.Stat(out); err == nil && !force {
				return &flagError{fmt.Errorf("%s exists; choose another -o FILE, or --force to replace it", out)}
			}
			names, err := cluster.ExpandHostList(hosts)
			if err != nil {
				return &flagError{fmt.Errorf("--hosts: %v", err)}
			}
			if usr == "" {
				if u, err := user.Current(); err == nil {
					usr = u.Username
				}
			}
			if knownHosts == "" {
				home, _ := os.UserHomeDir()
				knownHosts = filepath.Join(home, ".ssh", "known_hosts")
			}
			text := cluster.Template(cluster.TemplateOptions{Hosts: strings.Split(hosts, ","), User: usr, IdentityFile: identity,
				KnownHosts: knownHosts, Image: image, Name: name})
			// Load what would be written, so that the hosts are resolved as
			// every other command will (~/.ssh/config included).
			tmp, err := os.CreateTemp(filepath.Dir(out), ".cvs-init.*.toml")
			if err != nil {
				return err
			}
			tmp.WriteString(text)
			tmp.Close()
			defer os.Remove(tmp.Name())
			cfg, err := cluster.Load(tmp.Name())
			if err != nil {
				return err
			}
			scans := session.ScanHosts(cmd.Context(), cfg)
			rows := [][]string{}
			newKeys, mismatches, failed := 0, 0, 0
			for _, s := range scans {
				if s.Error != "" {
					failed++
					rows = append(rows, []string{s.Host, "-", "-", "UNREACHABLE: " + s.Error})
					continue
				}
				for _, k := range s.Keys {
					state := "new"
					switch {
					case k.Known:
						state = "already known"
					case k.Mismatch:
						state = "MISMATCH: known_hosts lists another key; not written"
						mismatches++
					default:
						newKeys++
					}
					rows = append(rows, []string{s.Host, k.Type, k.Fingerprint, state})
				}
			}
			if a.json {
				a.printJSON(scans)
			} else {
				report.Table(a.stdout, []string{"HOST", "KEY", "FINGERPRINT", "STATE"}, rows)
			}
			if newKeys > 0 {
				if !yes {
					if !isTerminal(a.stdin) {
						return &flagError{fmt.Errorf("%d new host key(s): check the fingerprints above on the hosts, then run again with --yes to record them in %s", newKeys, knownHosts)}
					}
					fmt.Fprintf(a.stderr, "Record these %d key(s) in %s (check the fingerprints on the hosts first)? [y/N] ", newKeys, knownHosts)
					var answer string
					fmt.Fscanln(a.stdin, &answer)
					if answer != "y" && answer != "yes" {
						return errors.New("nothing was written")
					}
				}
				if _, err := session.TrustHostKeys(cfg, scans); err != nil {
					return fmt.Errorf("recording the host keys in %s: %w", knownHosts, err)
				}
			}
			if err := os.WriteFile(out, []byte(text), 0o600); err != nil {
				return err
			}
			if !a.json {
				fmt.Fprintf(a.stdout, "\nwrote %s (%d host(s)); %d new key(s) recorded in %s\nnext: cvs -c %s status\n", out, len(names), newKeys, knownHosts, out)
			}
			switch {
			case mismatches > 0:
				return reported(3)
			case failed > 0:
				return reported(3)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&hosts, "hosts", "", "the hosts: names, addresses, ranges (node[01-08]), comma-separated")
	fl.StringVar(&usr, "user", "", "the SSH user (default: yours)")
	fl.StringVar(&identity, "identity-file", "", "the SSH private key (default: ~/.ssh/config, ssh-agent, ~/.ssh/id_*)")
	fl.StringVar(&knownHosts, "known-hosts", "", "the known_hosts file to record the keys in (default ~/.ssh/known_hosts)")
	fl.StringVar(&image, "image", "ubuntu:24.04", "the container image")
	fl.StringVar(&name, "name", "", "the container's name (default cvs-{user-id})")
	fl.StringVarP(&out, "output", "o", "cluster.toml", "the cluster file to write")
	fl.BoolVar(&force, "force", false, "replace an existing cluster file")
	fl.BoolVar(&yes, "yes", false, "record new host keys without asking")
	return cmd
}
