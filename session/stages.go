package session

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/report"
	"github.com/cvs-tool/cvs/transport"
)

// Stage is one step of carrying out a plan, on every host it concerns.
type Stage interface {
	// Name names the stage in progress lines, errors and reports.
	Name() string
	// Actions says what the stage will do on each host it touches, given
	// the session's plan; none means it has nothing to do. `--dry-run`
	// prints exactly this.
	Actions(s *Session) []HostAction
	// Run carries the stage out. A failure on some hosts is a *StageError.
	Run(ctx context.Context, s *Session) error
}

// setupStage marks the stages that set the containers up: when one fails,
// what this run launched is removed again, so a persistent cold start goes
// back to absent everywhere, never to a half-provisioned cluster.
type setupStage interface{ setup() }

// finalStage marks the stages that run even after an earlier one failed
// (teardown; later, recording the run).
type finalStage interface{ final() }

// HostAction is what one stage does on one host.
type HostAction struct {
	Host   string `json:"host"`
	Action string `json:"action"`
}

// Stage statuses in a StageReport.
const (
	StagePlanned = "planned" // dry run, or not reached yet
	StageOK      = "ok"
	StageFailed  = "failed"
	StageSkipped = "skipped" // an earlier stage failed
)

// StageReport is one stage of a run as planned and as it went.
type StageReport struct {
	Name     string       `json:"name"`
	Hosts    []HostAction `json:"hosts"`
	Status   string       `json:"status"`
	Error    string       `json:"error,omitempty"`
	Duration int64        `json:"duration_ms"`
}

// setupStages are the stages that make the containers ready for steps, in
// order. An image stage (obtain, push) goes before launchStage.
func setupStages() []Stage {
	return []Stage{distributeStage{}, launchStage{}, provisionStage{}, sshdStage{}, imageCheckStage{}}
}

// Stages returns the stages of `cvs run` with suite st (or of `cvs up`
// with st nil), in order.
func Stages(st *cluster.Suite) []Stage {
	stages := setupStages()
	if st != nil {
		stages = append(stages, stepsStage{suite: *st})
	}
	return append(stages, teardownStage{}, recordStage{})
}

// describe lists every stage with the actions it would take.
func (s *Session) describe(stages []Stage) []StageReport {
	out := make([]StageReport, len(stages))
	for i, st := range stages {
		acts := st.Actions(s)
		if acts == nil {
			acts = []HostAction{}
		}
		out[i] = StageReport{Name: st.Name(), Hosts: acts, Status: StagePlanned}
	}
	return out
}

// apply runs stages in order, filling reports (from describe). After a
// stage fails, the others are skipped except the final ones; when a setup
// stage failed, the final stages roll back. It returns the first failure.
func (s *Session) apply(ctx context.Context, stages []Stage, reports []StageReport) error {
	var first error
	for i, st := range stages {
		_, final := st.(finalStage)
		if first != nil && !final {
			reports[i].Status = StageSkipped
			continue
		}
		if len(reports[i].Hosts) == 0 {
			reports[i].Status = StageOK
			continue
		}
		start := time.Now()
		s.log.Debug("stage", "name", st.Name(), "hosts", len(reports[i].Hosts))
		err := st.Run(ctx, s)
		reports[i].Duration = time.Since(start).Milliseconds()
		reports[i].Status = StageOK
		if err != nil {
			reports[i].Status, reports[i].Error = StageFailed, s.mask.String(err.Error())
			if first == nil {
				first = err
				s.firstErr = err
				if _, ok := st.(setupStage); ok {
					s.rollback = true
				}
			}
		}
	}
	var se *StageError
	if errors.As(first, &se) && se.Cleanup == nil {
		se.Cleanup = s.cleanup
	}
	return first
}

// perHost runs fn on each host of hosts with a progress line; failures
// (fn's error, or the connection's) become one *StageError naming name.
// fn's Result, when it has output, gives the failure its tail.
func (s *Session) perHost(ctx context.Context, name string, hosts []cluster.Host,
	fn func(ctx context.Context, i int, h cluster.Host, c transport.Conn) (transport.Result, error)) error {
	var mu sync.Mutex
	var failures []HostFailure
	errs := s.each(ctx, name, hosts, func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error {
		if err := s.guard(h.Name); err != nil {
			return err
		}
		res, err := fn(ctx, i, h, c)
		if err != nil {
			out := string(res.Stdout) + string(res.Stderr)
			if xe := (*transport.ExitError)(nil); errors.As(err, &xe) && xe.StderrTail != "" {
				out = string(res.Stdout) // the error shows the stderr tail already
			}
			mu.Lock()
			failures = append(failures, HostFailure{Host: h.Name, Err: err, Output: report.Tail(out, 15)})
			mu.Unlock()
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			failures = append(failures, HostFailure{Host: hosts[i].Name, Err: err})
		}
	}
	if len(failures) == 0 {
		return nil
	}
	sort.Slice(failures, func(a, b int) bool { return failures[a].Host < failures[b].Host })
	return &StageError{Stage: name, Failures: failures}
}
