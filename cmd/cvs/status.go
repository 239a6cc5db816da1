package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/fleet"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/transport"
)

// statusSchemaVersion is the version of `cvs status --json`; it changes
// only when a field changes meaning or disappears.
const statusSchemaVersion = 1

// StatusJSON is the document `cvs status --json` prints.
type StatusJSON struct {
	SchemaVersion int            `json:"schema_version"`
	Cluster       string         `json:"cluster"`
	Container     string         `json:"container"`
	Image         string         `json:"image"`
	SSHDPort      int            `json:"sshd_port"`
	Hosts         []docker.Facts `json:"hosts"`
	Summary       StatusSummary  `json:"summary"`
	// Plan is what `cvs run` would do now (lifetime.Decide), unchanged by
	// status itself.
	Plan lifetime.Plan `json:"plan"`
}

// StatusSummary counts hosts by what the probe found.
type StatusSummary struct {
	Hosts     int            `json:"hosts"`
	Reachable int            `json:"reachable"`
	Docker    int            `json:"docker"`
	States    map[string]int `json:"states"`
	// ImageIDs counts hosts by the image ID their container runs.
	ImageIDs map[string]int `json:"container_image_ids"`
	Problems int            `json:"problems"`
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Probe every host: SSH, Docker, the container, its image and sshd",
		Long: `status probes every host in one round trip each and prints, per host:
whether it is reachable, the Docker version, the configured container's state
(running, exited, created, absent, or unknown when the host could not be
probed), its ID, the image ID it runs, when it started, the local ID of the
configured image, and whether sshd listens on sshd_port inside it.

Exit code 3 when any host could not be probed fully (unreachable, auth, host
key, no Docker). Nothing on any host is changed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			f, d, err := a.connect(cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			defer f.Close()
			facts, err := a.probeAll(cmd.Context(), cfg, f)
			if err != nil {
				return err
			}
			sum := summarize(facts)
			plan := lifetime.Decide(cfg.Container.Lifetime, facts, lifetime.Options{ClusterFile: cfg.File, Image: cfg.Container.Image})
			if a.json {
				if err := a.printJSON(StatusJSON{SchemaVersion: statusSchemaVersion, Cluster: cfg.File,
					Container: cfg.Container.Name, Image: cfg.Container.Image, SSHDPort: cfg.Container.SSHDPort,
					Hosts: facts, Summary: sum, Plan: plan}); err != nil {
					return err
				}
			} else {
				a.printStatus(cfg, facts, sum)
				fmt.Fprintf(a.stdout, "\nnext `cvs run` (lifetime %s): %s — %s\n", plan.Lifetime, plan.Verdict, plan.Reason)
				for _, w := range plan.Warnings {
					fmt.Fprintf(a.stdout, "  warning: %s\n", w)
				}
			}
			if sum.Problems > 0 {
				return reported(exitcode.Preflight)
			}
			return nil
		},
	}
}

// probeAll probes every host of cfg, one round trip each.
func (a *app) probeAll(ctx context.Context, cfg *cluster.Config, f *fleet.Fleet) ([]docker.Facts, error) {
	spec := docker.ProbeSpec{Container: cfg.Container.Name, Image: cfg.Container.Image, SSHDPort: cfg.Container.SSHDPort, Sudo: cfg.Sudo}
	facts := make([]docker.Facts, len(cfg.Hosts))
	p := a.progress(f, "probing", len(cfg.Hosts))
	errs := f.Each(ctx, cfg.Hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, docker.ProbeTimeout)
		defer cancel()
		facts[i] = docker.Probe(ctx, c, h.Name, spec)
		return nil
	})
	p.Stop()
	for i, err := range errs {
		if err != nil {
			facts[i] = docker.Unknown(cfg.Hosts[i].Name, spec, err)
		}
	}
	// One warning per kind of problem, not one per host: at 200 hosts
	// without Docker the log would drown the table.
	var kinds []string
	byKind := map[string][]docker.Facts{}
	for _, fc := range facts {
		if fc.Error != "" {
			if _, ok := byKind[fc.ErrorKind]; !ok {
				kinds = append(kinds, fc.ErrorKind)
			}
			byKind[fc.ErrorKind] = append(byKind[fc.ErrorKind], fc)
		}
	}
	for _, k := range kinds {
		fs := byKind[k]
		if len(fs) == 1 {
			a.log.Warn(fs[0].Error, "host", fs[0].Host)
			continue
		}
		a.log.Warn(fs[0].Error, "host", fs[0].Host, "same_kind_on", fmt.Sprintf("%d more hosts", len(fs)-1))
	}
	return facts, ctx.Err()
}

func summarize(facts []docker.Facts) StatusSummary {
	s := StatusSummary{Hosts: len(facts), States: map[string]int{}, ImageIDs: map[string]int{}}
	for _, f := range facts {
		if f.Reachable {
			s.Reachable++
		}
		if f.DockerVersion != "" {
			s.Docker++
		}
		s.States[string(f.Container.State)]++
		if f.Container.ImageID != "" {
			s.ImageIDs[f.Container.ImageID]++
		}
		if f.Error != "" {
			s.Problems++
		}
	}
	return s
}

// shortID is docker.ShortID with "-" for none, for tables.
func shortID(id string) string { return dash(docker.ShortID(id)) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) printStatus(cfg *cluster.Config, facts []docker.Facts, sum StatusSummary) {
	fmt.Fprintf(a.stdout, "container %q · image %s · lifetime %s\n\n", cfg.Container.Name, dash(cfg.Container.Image), cfg.Container.Lifetime)
	rows := make([][]string, 0, len(facts))
	for _, f := range facts {
		ssh := "ok"
		if !f.Reachable {
			ssh = f.ErrorKind
		}
		dockerCol := f.DockerVersion
		if dockerCol == "" {
			dockerCol = "-"
			if f.Reachable && f.ErrorKind != "" {
				dockerCol = f.ErrorKind
			}
		}
		started := f.Container.StartedAt
		if len(started) > 19 {
			started = started[:19] + "Z"
		}
		rows = append(rows, []string{f.Host, ssh, dockerCol, string(f.Container.State), shortID(f.Container.ID),
			shortID(f.Container.ImageID), dash(started), shortID(f.ImageID), string(f.Container.SSHD)})
	}
	report.Table(a.stdout, []string{"HOST", "SSH", "DOCKER", "CONTAINER", "ID", "IMAGE", "STARTED", "CONFIGURED", "SSHD"}, rows)

	var states []string
	for st, n := range sum.States {
		states = append(states, fmt.Sprintf("%s %d", st, n))
	}
	sort.Strings(states)
	line := fmt.Sprintf("\n%d host(s): %d reachable, docker on %d; container: %s", sum.Hosts, sum.Reachable, sum.Docker, strings.Join(states, ", "))
	if len(sum.ImageIDs) > 1 {
		line += fmt.Sprintf("; IMAGE SKEW: containers run %d different images", len(sum.ImageIDs))
	}
	fmt.Fprintln(a.stdout, line)
	for _, f := range facts {
		if f.Error == "" {
			continue
		}
		if strings.HasPrefix(f.Error, f.Host+":") {
			fmt.Fprintf(a.stdout, "  %s\n", f.Error)
		} else {
			fmt.Fprintf(a.stdout, "  %s: %s\n", f.Host, f.Error)
		}
	}
}
