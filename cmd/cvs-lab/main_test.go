package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/shell"
)

// Command-line handling only; the lab itself is tested by the e2e tier.

func TestUsageErrors(t *testing.T) {
	t.Setenv("CVS_LAB_DIR", t.TempDir())
	for _, args := range [][]string{
		{"frobnicate"},
		{"up", "three"},
		{"up", "1", "2"},
		{"up", "3", "--slurm", "4"},
		{"ssh", "host1"},
		{"ssh", "host1", "--"},
		{"exec"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		var usage usageErr
		if !errors.As(err, &usage) {
			t.Errorf("cvs-lab %s: %v, want a usage error (exit 2)", strings.Join(args, " "), err)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("help: %v", err)
	}
	for _, want := range []string{"up [N] [--slurm]", "down [--purge]", "fault KIND", "registry-slow", "hostkey-rotate"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

// Commands that need a running lab say so instead of failing obscurely.
func TestNeedsRunningLab(t *testing.T) {
	t.Setenv("CVS_LAB_DIR", t.TempDir())
	for _, args := range [][]string{{"env"}, {"ssh", "host1", "--", "true"}, {"fault", "sshd-stop", "host1"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "cvs-lab up") {
			t.Errorf("cvs-lab %s without a lab: %v, want a hint to run cvs-lab up", strings.Join(args, " "), err)
		}
	}
}

func TestStatusWithoutLab(t *testing.T) {
	t.Setenv("CVS_LAB_DIR", t.TempDir())
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"status"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not up") {
		t.Errorf("status without a lab:\n%s", out.String())
	}
}

func TestHostAndCommand(t *testing.T) {
	host, argv, err := hostAndCommand("ssh", []string{"host2", "--", "echo", "a b"})
	if err != nil || host != "host2" || strings.Join(argv, "|") != "echo|a b" {
		t.Errorf("got %q %q %v", host, argv, err)
	}
	host, argv, err = hostAndCommand("exec", []string{"host1", "true"})
	if err != nil || host != "host1" || len(argv) != 1 {
		t.Errorf("without --: got %q %q %v", host, argv, err)
	}
}

func TestShQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "it's", "/var/tmp/cvs lab", `$HOME "x"`} {
		out, err := exec.Command("sh", "-c", "printf %s "+shell.Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shell.Quote(%q) came back as %q, %v", s, out, err)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		slurm bool
		pos   string
	}{
		{[]string{"3", "--slurm"}, true, "3"},
		{[]string{"--slurm", "3"}, true, "3"},
		{[]string{"3"}, false, "3"},
		{[]string{}, false, ""},
		{[]string{"--", "--slurm"}, false, "--slurm"},
		{[]string{"3", "--", "--slurm"}, false, "3|--slurm"},
	} {
		fs := newFlags("up", io.Discard)
		slurm := fs.Bool("slurm", false, "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || *slurm != tc.slurm || strings.Join(pos, "|") != tc.pos {
			t.Errorf("%q: slurm=%v pos=%q err=%v, want slurm=%v pos=%q", tc.args, *slurm, pos, err, tc.slurm, tc.pos)
		}
	}
}
