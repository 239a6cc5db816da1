package session

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/history"
)

// recordStage writes the run record (package history): the last stage,
// run whatever happened before it.
type recordStage struct{}

func (recordStage) final() {}

func (recordStage) Name() string { return "record" }

func (recordStage) Actions(*Session) []HostAction {
	return []HostAction{{Host: ThisMachine, Action: "write the run record"}}
}

func (recordStage) Run(ctx context.Context, s *Session) error {
	err := s.outcome(ctx, s.firstErr)
	return s.record(ExitCode(ctx, err), err)
}

// record writes the record of this session, ending with exit code code
// and error err. A record that cannot be written is logged, never fatal:
// the run itself is done.
func (s *Session) record(code int, err error) error {
	return s.saveRecord(code, err, true)
}

// recordStart writes the record of a run that is starting (no end, exit
// code -1), so that its logs can be followed while it runs.
func (s *Session) recordStart() { s.saveRecord(-1, nil, false) }

func (s *Session) saveRecord(code int, err error, final bool) error {
	ct := s.Config.Container
	r := &history.Record{ID: s.RunID, Command: s.command, CommandLine: strings.Join(append([]string{"cvs"}, os.Args[1:]...), " "),
		Cluster: s.Config.File, Suite: s.suite, Lifetime: string(ct.Lifetime), Image: ct.ConfiguredImage, Site: s.Config.Site, EffectiveImage: ct.Image, LaunchedImage: s.Image, Digest: s.Digest,
		Distribution: ct.Distribute, Verdict: string(s.Plan.Verdict), Start: s.started.UTC(), End: time.Now().UTC(),
		Version: s.opts.Version, ExitCode: code}
	if !final {
		r.End = time.Time{}
	}
	if err != nil {
		r.Error = s.mask.String(err.Error())
	}
	for i, hp := range s.Plan.Hosts {
		hr := history.HostRecord{Host: hp.Host, Action: string(hp.Action), ContainerID: hp.ContainerID, ImageID: hp.ImageID}
		if i < len(s.Facts) {
			hr.StartedAt = s.Facts[i].Container.StartedAt
		}
		if a := s.after[i]; a.ID != "" {
			hr.ContainerID, hr.ImageID, hr.StartedAt = a.ID, a.ImageID, a.StartedAt
		}
		r.Hosts = append(r.Hosts, hr)
	}
	for _, p := range s.pushes {
		for i := range r.Hosts {
			if r.Hosts[i].Host == p.Host {
				r.Hosts[i].PushedBytes, r.Hosts[i].PushedLayers = p.Bytes, p.Layers
			}
		}
	}
	if st, ok := s.Config.Suite(s.suite); ok && s.suite != "" {
		for _, step := range st.Steps {
			r.SuiteSteps = append(r.SuiteSteps, step.Name)
		}
	}
	for _, st := range s.results {
		r.Steps = append(r.Steps, history.StepRecord{Step: st.Step, Host: st.Host, ExitCode: st.ExitCode, DurationMS: st.Millis, Error: st.Error})
	}
	dir, werr := history.Save(r)
	if werr != nil {
		s.log.Warn("the run record could not be written", "err", werr)
		return nil
	}
	s.RecordDir = dir
	if final {
		s.log.Info("run recorded", "dir", dir)
	}
	return nil
}
