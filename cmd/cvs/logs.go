package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/cvs-tool/cvs/internal/atomicfile"
	"github.com/cvs-tool/cvs/session"
)

func (a *app) logsCommand() *cobra.Command {
	var host, step string
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [RUN] [--host H] [--step S] [--follow]",
		Short: "Print the stored output of a run's steps (default: the newest run)",
		Long: `logs prints what the steps of a run printed, complete (the terminal may have
shown only a tail), from the run's folder: one log per step and host, each
line stamped with its time and stream (out|, err|). RUN is a run ID or a
unique prefix of one (cvs history lists them); default the newest run.
--follow keeps printing new lines until the run has ended.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{errors.New("logs takes at most one run ID")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			if follow {
				return a.followLogs(cmd, id, step, host)
			}
			_, logs, err := session.RunLogs(id, step, host)
			if err != nil {
				return err
			}
			if len(logs) == 0 {
				return errors.New("no stored output for that run, step and host")
			}
			for _, l := range logs {
				if _, err := a.copyLog(l, 0); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "only this host's output")
	cmd.Flags().StringVar(&step, "step", "", "only this step's output")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the run ends")
	return cmd
}

// copyLog prints a log from byte offset from on, each line prefixed by
// step and host, and returns the offset after the last complete line.
func (a *app) copyLog(l session.LogFile, from int64) (int64, error) {
	f, err := os.Open(l.Path)
	if err != nil {
		return from, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return from, err
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A partial last line is printed once it is complete.
			return from, nil
		}
		from += int64(len(line))
		fmt.Fprintf(a.stdout, "%s %s: %s", l.Step, l.Host, line)
	}
}

// followLogs prints the run's logs as they grow, until its record says it
// ended.
func (a *app) followLogs(cmd *cobra.Command, id, step, host string) error {
	offsets := map[string]int64{}
	for {
		rec, logs, err := session.RunLogs(id, step, host)
		if err != nil {
			return err
		}
		id = rec.ID
		for _, l := range logs {
			off, err := a.copyLog(l, offsets[l.Path])
			if err != nil {
				return err
			}
			offsets[l.Path] = off
		}
		if !rec.End.IsZero() {
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (a *app) reportCommand() *cobra.Command {
	var output, junit string
	cmd := &cobra.Command{
		Use:   "report [RUN] [-o FILE] [--junit FILE]",
		Short: "Write a past run's HTML report or JUnit XML (default: the newest run)",
		Long: `report writes what a run did as one self-contained HTML page (no external
resource): its command line, image and digest, lifetime and verdict, each
host's lifetime decision and container, the host × step matrix coloured by
outcome, the steps' durations as a chart, and the tail of each step's
output, the failed ones open. RUN is a run ID or a unique prefix of one (cvs
history lists them); default the newest run.

Without -o or --junit the page goes into the run's folder as report.html.
-o FILE writes it to FILE, --junit FILE writes the run's JUnit XML; - is
stdout. Files are replaced atomically; report prints the path of each.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &flagError{errors.New("report takes at most one run ID")}
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if output == "-" && junit == "-" {
				return &flagError{errors.New("-o - and --junit - would both write to stdout; give one of them a file")}
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			rec, inRunDir, err := session.HTMLReportFile(id)
			if err != nil {
				return err
			}
			if output == "" && junit == "" {
				output = inRunDir
			}
			// The paths written go to stdout, unless a document does.
			paths := a.stdout
			if output == "-" || junit == "-" {
				paths = a.stderr
			}
			for _, out := range []struct {
				file  string
				write func(io.Writer, string) error
			}{{output, session.WriteHTML}, {junit, session.WriteJUnit}} {
				if out.file == "" {
					continue
				}
				if err := a.writeFile(out.file, func(w io.Writer) error { return out.write(w, rec.ID) }); err != nil {
					return err
				}
				if out.file != "-" {
					abs, _ := filepath.Abs(out.file)
					fmt.Fprintln(paths, abs)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the HTML report to FILE (- for stdout; default: report.html in the run's folder)")
	cmd.Flags().StringVar(&junit, "junit", "", "write the run as JUnit XML to FILE (- for stdout)")
	return cmd
}

// writeJUnit writes run id's JUnit XML to file ("-": stdout), atomically.
func (a *app) writeJUnit(file, id string) error {
	return a.writeFile(file, func(w io.Writer) error { return session.WriteJUnit(w, id) })
}

// writeFile writes what write produces to file ("-": stdout). The file is
// replaced atomically: a reader (a CI job, a browser) sees the old file or
// the new one, never half of one, and a failed write leaves the old one.
func (a *app) writeFile(file string, write func(io.Writer) error) error {
	if file == "-" {
		return write(a.stdout)
	}
	return atomicfile.Write(file, write)
}
