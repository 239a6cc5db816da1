package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Send images to the hosts without a registry, and manage this machine's image cache",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "push [REF]",
		Short: "Send the image to every host: only the layers each one lacks",
		Long: `image push obtains the image once on this machine (the cache, else its
registry, else this machine's Docker), keeps it in the cache, and sends every
host only the layers it lacks, over SSH, where docker load completes it; the
loaded image ID is checked. A host that holds the image gets nothing.
REF defaults to the cluster file's image; it may also be the image ID or
digest of a cached image, or a unique prefix of one (cvs image ls): that
cached image is pushed exactly, its tag not resolved again.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{errors.New("image push takes at most one image reference")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadCluster()
			if err != nil {
				return err
			}
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			rep, err := session.PushImage(cmd.Context(), cfg, ref, a.sessionOptions(false))
			if exitcode.Of(err) == exitcode.Usage {
				return &flagError{err}
			}
			if rep == nil {
				return err
			}
			if a.json {
				a.printJSON(rep)
				return reported(exitFor(cmd.Context(), err))
			}
			rows := make([][]string, 0, len(rep.Pushes))
			for _, p := range rep.Pushes {
				sent := fmt.Sprintf("%d of %d layers, %s", p.Layers, p.Total, bytesHuman(p.Bytes))
				switch {
				case p.Skipped:
					sent = "nothing: the host has it"
				case p.Full:
					sent += " (the whole image: the host did not take a partial one)"
				}
				rows = append(rows, []string{p.Host, sent})
			}
			fmt.Fprintf(a.stdout, "image %s (%s)\n", rep.Image, shortID(rep.ImageID))
			a.longTable([]string{"HOST", "SENT"}, rows, make([]bool, len(rows)))
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the images in this machine's cache",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			all, err := session.CachedImages(a.sessionOptions(false))
			if err != nil {
				return err
			}
			if a.json {
				if all == nil {
					all = []session.ImageEntry{}
				}
				return a.printJSON(all)
			}
			rows := make([][]string, 0, len(all))
			for _, e := range all {
				if e.Partial {
					// What a killed fetch, save or push left; image prune
					// reclaims it once nobody writes it.
					rows = append(rows, []string{"(partial)", "-", e.File, bytesHuman(e.Size), e.LastUsed.Local().Format("2006-01-02 15:04")})
					continue
				}
				rows = append(rows, []string{shortID(e.ImageID), dash(shortID(e.Digest)), e.Ref, bytesHuman(e.Size), e.LastUsed.Local().Format("2006-01-02 15:04")})
			}
			report.Table(a.stdout, []string{"IMAGE ID", "DIGEST", "REFERENCE", "SIZE", "LAST USED"}, rows)
			return nil
		},
	})
	var limits pruneLimits
	prune := &cobra.Command{
		Use:   "prune [--older-than 30d] [--keep N]",
		Short: "Remove cached images not used lately (never one a running cvs uses)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			age, keep, err := limits.parse("image prune")
			if err != nil {
				return err
			}
			rep, err := session.PruneImages(age, keep, a.sessionOptions(false))
			if err != nil {
				return err
			}
			if a.json {
				for _, l := range []*[]session.ImageEntry{&rep.Removed, &rep.InUse, &rep.Partials} {
					if *l == nil {
						*l = []session.ImageEntry{}
					}
				}
				return a.printJSON(rep)
			}
			var freed int64
			for _, e := range rep.Removed {
				fmt.Fprintf(a.stdout, "removed %s %s (last used %s)\n", shortID(e.ImageID), e.Ref, e.LastUsed.Local().Format("2006-01-02"))
				freed += e.Size
			}
			for _, e := range rep.InUse {
				fmt.Fprintf(a.stdout, "kept %s %s: a running cvs uses it\n", shortID(e.ImageID), e.Ref)
			}
			for _, e := range rep.Partials {
				fmt.Fprintf(a.stdout, "removed the partial file %s (%s, last written %s)\n", e.File, bytesHuman(e.Size), e.LastUsed.Local().Format("2006-01-02 15:04"))
				freed += e.Size
			}
			fmt.Fprintf(a.stdout, "%d image(s) removed, %d in use kept, %d partial file(s) removed, %s freed\n",
				len(rep.Removed), len(rep.InUse), len(rep.Partials), bytesHuman(freed))
			return nil
		},
	}
	limits.add(prune, "images last used", "most recently used images")
	cmd.AddCommand(prune)
	return cmd
}

// pruneLimits are the --older-than and --keep flags of the prune commands.
type pruneLimits struct {
	olderThan string
	keep      int
}

func (l *pruneLimits) add(cmd *cobra.Command, what, newest string) {
	cmd.Flags().StringVar(&l.olderThan, "older-than", "", "remove "+what+" longer ago than this (e.g. 30d, 12h)")
	cmd.Flags().IntVar(&l.keep, "keep", -1, "keep at most this many of the "+newest)
}

// parse returns the age and the count; command names the command in
// errors. At least one of the two is needed.
func (l *pruneLimits) parse(command string) (time.Duration, int, error) {
	age, err := parseAge(l.olderThan)
	if err != nil {
		return 0, 0, &flagError{err}
	}
	if age == 0 && l.keep < 0 {
		return 0, 0, &flagError{fmt.Errorf("%s needs --older-than or --keep", command)}
	}
	return age, l.keep, nil
}

// parseAge reads a duration that may also be written in days ("30d").
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("--older-than %q: write a number of days (30d) or a duration (12h)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("--older-than %q: write a number of days (30d) or a duration (12h)", s)
	}
	return d, nil
}

// bytesHuman is a byte count for people.
func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
