package session

import (
	"io"
	"path/filepath"
	"time"

	"github.com/cvs-tool/cvs/history"
)

// RunRecord is the record of one run (package history).
type RunRecord = history.Record

// History returns every recorded run, newest first.
func History() ([]RunRecord, error) { return history.List() }

// FindRun returns the run whose ID is id or starts with it ("" is the
// newest); an ambiguous prefix is an error listing the candidates.
func FindRun(id string) (RunRecord, error) { return history.Find(id) }

// LogFile is one stored step log of a run.
type LogFile = history.LogFile

// RunLogs lists the stored step logs of run id ("" or a prefix: as
// FindRun), filtered by step and host ("": any).
func RunLogs(id, step, host string) (RunRecord, []LogFile, error) {
	r, err := history.Find(id)
	if err != nil {
		return r, nil, err
	}
	logs, err := history.LogFiles(r.ID, step, host)
	return r, logs, err
}

// WriteJUnit writes the JUnit XML of run id ("" or a prefix: as FindRun).
func WriteJUnit(w io.Writer, id string) error { return writeRun(w, id, history.WriteJUnit) }

// WriteHTML writes the HTML report of run id ("" or a prefix: as
// FindRun): one self-contained page (package history, WriteHTML).
func WriteHTML(w io.Writer, id string) error { return writeRun(w, id, history.WriteHTML) }

func writeRun(w io.Writer, id string, write func(io.Writer, history.Record) error) error {
	r, err := history.Find(id)
	if err != nil {
		return err
	}
	return write(w, r)
}

// HTMLReportFile returns run id ("" or a prefix: as FindRun) and where its
// HTML report goes unless told otherwise: report.html in the run's folder.
func HTMLReportFile(id string) (RunRecord, string, error) {
	r, err := history.Find(id)
	if err != nil {
		return r, "", err
	}
	dir, err := history.RunDir(r.ID)
	return r, filepath.Join(dir, history.ReportFile), err
}

// PruneHistory removes the records (and logs) of runs that ended longer
// ago than olderThan (0: no age limit), beyond the keep newest (keep < 0:
// no limit).
func PruneHistory(olderThan time.Duration, keep int) ([]RunRecord, error) {
	var cutoff time.Time
	if olderThan > 0 {
		cutoff = time.Now().Add(-olderThan)
	}
	return history.Prune(cutoff, keep)
}
