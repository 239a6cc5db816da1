// Package history keeps a record of every cvs invocation that may change
// containers (run, up, down): which image it used, what it did on each
// host, how each step went, how it ended. Records live on the operator's
// machine, one folder per run under $XDG_STATE_HOME/cvs/runs/ (or
// ~/.local/state/cvs/runs/), written atomically, so that "which image did
// the run on Tuesday use?" has an answer. Logs and reports of a run go
// into the same folder.
package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/internal/atomicfile"
	"github.com/cvs-tool/cvs/internal/xdg"
)

// SchemaVersion is the version of record.json; fields are only ever added.
const SchemaVersion = 1

// Record is one invocation, as record.json holds it.
type Record struct {
	SchemaVersion int    `json:"schema_version"`
	ID            string `json:"id"`
	Command       string `json:"command"` // run, up, down
	CommandLine   string `json:"command_line"`
	Cluster       string `json:"cluster"`
	Suite         string `json:"suite,omitempty"`
	Lifetime      string `json:"lifetime"`
	// Image is the configured reference; EffectiveImage the reference after
	// the site's rewrite rules (Site); LaunchedImage what the hosts were told
	// to run (EffectiveImage pinned to Digest when it was resolved).
	Image          string `json:"image"`
	Site           string `json:"site,omitempty"`
	EffectiveImage string `json:"effective_image"`
	LaunchedImage  string `json:"launched_image"`
	// Digest is the manifest digest the reference resolved to, when it was
	// resolved.
	Digest string `json:"digest,omitempty"`
	// Distribution says how the hosts got the image: "pull" or "push".
	Distribution string       `json:"distribution"`
	Verdict      string       `json:"verdict"`
	Hosts        []HostRecord `json:"hosts"`
	Steps        []StepRecord `json:"steps,omitempty"`
	// SuiteSteps names the suite's steps in order, those the run never
	// reached (after a failed one) included.
	SuiteSteps []string  `json:"suite_steps,omitempty"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Version    string    `json:"cvs_version"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
}

// HostRecord is what a run did on one host and what runs there after it.
type HostRecord struct {
	Host        string `json:"host"`
	Action      string `json:"action"`
	ContainerID string `json:"container_id,omitempty"`
	ImageID     string `json:"image_id,omitempty"`
	StartedAt   string `json:"started_at,omitempty"`
	// With distribute = "push": what was sent to the host.
	PushedBytes  int64 `json:"pushed_bytes,omitempty"`
	PushedLayers int   `json:"pushed_layers,omitempty"`
}

// StepRecord is one step on one host.
type StepRecord struct {
	Step       string `json:"step"`
	Host       string `json:"host"`
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
}

// Dir is the folder holding every run's folder.
func Dir() (string, error) {
	dir, err := xdg.State("runs")
	if err != nil {
		return "", fmt.Errorf("run history: %w", err)
	}
	return dir, nil
}

// RunDir is the folder of run id.
func RunDir(id string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, id), nil
}

// recordFile is the record's name in its run folder.
const recordFile = "record.json"

// Save writes r to its run folder (mode 0700, the record 0600: it names
// hosts and images), atomically: a reader sees the old record or the new
// one, never half of one. It returns the folder.
func Save(r *Record) (string, error) {
	r.SchemaVersion = SchemaVersion
	dir, err := RunDir(r.ID)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("run record: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, recordFile), append(data, '\n')); err != nil {
		return "", fmt.Errorf("run record: %w", err)
	}
	return dir, nil
}

// List returns every record, newest first. Folders without a readable
// record (a run in progress, a damaged file) are skipped.
func List() ([]Record, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("run history: %w", err)
	}
	var out []Record
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := load(filepath.Join(dir, e.Name(), recordFile))
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out, nil
}

func load(path string) (Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Find returns the record whose ID is id or starts with it; "" is the
// newest. An ambiguous prefix is an error listing the candidates.
func Find(id string) (Record, error) {
	all, err := List()
	if err != nil {
		return Record{}, err
	}
	if len(all) == 0 {
		return Record{}, errors.New("no runs recorded yet")
	}
	if id == "" {
		return all[0], nil
	}
	var found []Record
	for _, r := range all {
		if r.ID == id {
			return r, nil
		}
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return Record{}, fmt.Errorf("no run %q (cvs history lists them)", id)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, r := range found {
		ids = append(ids, fmt.Sprintf("%s (%s, %s)", r.ID, r.Start.Format(time.RFC3339), r.Command))
	}
	return Record{}, fmt.Errorf("%q names %d runs; give more of the ID:\n  %s", id, len(found), strings.Join(ids, "\n  "))
}

// Previous returns the digest the newest earlier record of image (an
// effective reference) resolved to, or "".
func Previous(image string) string {
	all, err := List()
	if err != nil {
		return ""
	}
	for _, r := range all {
		if r.EffectiveImage == image && r.Digest != "" {
			return r.Digest
		}
	}
	return ""
}

// Prune removes the folders of runs that ended before cutoff (zero: none
// by age), beyond the keep newest (keep < 0: no limit); runs that have not
// ended are kept. It returns the records removed.
func Prune(cutoff time.Time, keep int) ([]Record, error) {
	all, err := List()
	if err != nil {
		return nil, err
	}
	var removed []Record
	for i, r := range all {
		old := !cutoff.IsZero() && r.End.Before(cutoff)
		over := keep >= 0 && i >= keep
		if r.End.IsZero() || (!old && !over) {
			continue
		}
		dir, err := RunDir(r.ID)
		if err != nil {
			return removed, err
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, err
		}
		removed = append(removed, r)
	}
	return removed, nil
}
