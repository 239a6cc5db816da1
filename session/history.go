package session

import "github.com/cvs-tool/cvs/history"

// RunRecord is the record of one run (package history).
type RunRecord = history.Record

// History returns every recorded run, newest first.
func History() ([]RunRecord, error) { return history.List() }

// FindRun returns the run whose ID is id or starts with it ("" is the
// newest); an ambiguous prefix is an error listing the candidates.
func FindRun(id string) (RunRecord, error) { return history.Find(id) }
