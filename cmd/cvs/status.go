package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/session"
)

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
			rep, err := session.Status(cmd.Context(), cfg, a.sessionOptions(false))
			if err != nil {
				return err
			}
			sum, plan := rep.Summary, rep.Plan
			if a.json {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else {
				a.printStatus(rep)
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

// shortID is a container or image ID as docker ps shows it (12 hex
// digits), "-" for none, for tables.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return dash(id[:min(12, len(id))])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) printStatus(rep *session.StatusReport) {
	facts, sum := rep.Hosts, rep.Summary
	img := dash(rep.Image)
	if rep.ConfiguredImage != rep.Image {
		img = fmt.Sprintf("%s (site %s; configured %s)", rep.Image, rep.Site, rep.ConfiguredImage)
	}
	fmt.Fprintf(a.stdout, "container %q · image %s · lifetime %s\n\n", rep.Container, img, rep.Lifetime)
	rows := make([][]string, 0, len(facts))
	problem := make([]bool, 0, len(facts))
	for _, f := range facts {
		problem = append(problem, !f.Reachable || f.Error != "")
		ssh := "ok"
		if !f.Reachable {
			ssh = string(f.ErrorKind)
		}
		dockerCol := f.DockerVersion
		if dockerCol != "" && f.DockerAccess != "" {
			dockerCol += " " + f.DockerAccess
		}
		if dockerCol == "" {
			dockerCol = "-"
			if f.Reachable && f.ErrorKind != "" {
				dockerCol = string(f.ErrorKind)
			}
		}
		started := f.Container.StartedAt
		if len(started) > 19 {
			started = started[:19] + "Z"
		}
		rows = append(rows, []string{f.Host, ssh, dockerCol, string(f.Container.State), shortID(f.Container.ID),
			shortID(f.Container.ImageID), dash(started), shortID(f.ImageID), string(f.Container.SSHD)})
	}
	a.longTable([]string{"HOST", "SSH", "DOCKER", "CONTAINER", "ID", "IMAGE", "STARTED", "CONFIGURED", "SSHD"}, rows, problem)

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
	// Each error once, with the hosts that had it.
	var errs []string
	byErr := map[string][]string{}
	for _, f := range facts {
		if f.Error == "" {
			continue
		}
		if _, ok := byErr[f.Error]; !ok {
			errs = append(errs, f.Error)
		}
		byErr[f.Error] = append(byErr[f.Error], f.Host)
	}
	for i, e := range errs {
		if limit := a.rowLimit(); limit > 0 && i == limit {
			fmt.Fprintf(a.stdout, "  +%d more errors (all in --json)\n", len(errs)-limit)
			break
		}
		fmt.Fprintf(a.stdout, "  %s: %s\n", a.hostList(byErr[e]), e)
	}
	// Why hosts use the docker CLI, once per reason.
	var notes []string
	byNote := map[string][]string{}
	for _, f := range facts {
		if f.DockerAccess == "cli" && f.DockerAccessNote != "" {
			if _, ok := byNote[f.DockerAccessNote]; !ok {
				notes = append(notes, f.DockerAccessNote)
			}
			byNote[f.DockerAccessNote] = append(byNote[f.DockerAccessNote], f.Host)
		}
	}
	for _, n := range notes {
		fmt.Fprintf(a.stdout, "  docker CLI on %s: %s\n", a.hostList(byNote[n]), n)
	}
	// How pulls authenticate, once per way.
	var ways []string
	byWay := map[string][]string{}
	for _, f := range facts {
		if w := rep.RegistryLogins[f.Host]; w != "" {
			if _, ok := byWay[w]; !ok {
				ways = append(ways, w)
			}
			byWay[w] = append(byWay[w], f.Host)
		}
	}
	for _, w := range ways {
		fmt.Fprintf(a.stdout, "  registry login on %s: %s\n", a.hostList(byWay[w]), w)
	}
}
