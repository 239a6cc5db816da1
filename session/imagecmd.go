package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/images"
)

// ImageEntry is one image in this machine's image cache.
type ImageEntry = images.Entry

// PushReport is the document `cvs image push --json` prints.
type PushReport struct {
	Image string `json:"image"`
	// ImageID is the image pushed; "" when the hosts are of several
	// architectures and each was pushed its own (Pushes say which).
	ImageID string `json:"image_id"`
	Digest  string `json:"digest,omitempty"`
	Pushes  []Push `json:"pushes"`
	Record  string `json:"record,omitempty"`
}

func imageCache(opts Options) *images.Cache {
	if opts.ImageCache != nil {
		return opts.ImageCache
	}
	return &images.Cache{Dir: images.DefaultImageCacheDir()}
}

// PushImage is `cvs image push [REF]`: send the image (the configured one,
// or ref: a reference, or the image ID or digest of a cached image, or a
// unique prefix of one) to every host, each getting only the layers it
// lacks, whatever the cluster file's distribute says. A cached image named
// by ID or digest is pushed exactly as cached: its tag is not resolved
// again. It takes the cluster lock; containers are not touched.
func PushImage(ctx context.Context, cfg *cluster.Config, ref string, opts Options) (*PushReport, error) {
	c := *cfg
	ct := c.Container
	ct.Distribute = cluster.DistributePush
	var entry *images.Entry
	if ref != "" {
		ct.Image = ref
		e, err := imageCache(opts).Find(ref)
		var amb *images.AmbiguousError
		switch {
		case err == nil:
			ct.Image, entry = e.Ref, &e
		case errors.As(err, &amb):
			return nil, exitcode.With(exitcode.Usage, err)
		}
	}
	if ct.Image == "" {
		return nil, exitcode.With(exitcode.Usage, fmt.Errorf("no image to push: give one, or set [container] image in %s", cfg.File))
	}
	c.Container = ct
	s, err := open(ctx, &c, openOptions{lock: true, resolve: entry == nil, command: "image push"}, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if entry != nil {
		s.entry, s.Digest = entry, entry.Digest
	}
	if s.Plan.Verdict == Preflight {
		return nil, s.verdictError()
	}
	st := distributeStage{all: true}
	err = st.Run(ctx, s)
	rep := &PushReport{Image: ct.Image, Digest: s.Digest, Pushes: s.pushes}
	if len(s.saved) == 1 {
		for _, saved := range s.saved {
			rep.ImageID = saved.ImageID
		}
	}
	if err != nil {
		err = exitcode.With(exitcode.Partial, err)
	}
	err = s.withLeftovers(err)
	s.record(ExitCode(ctx, err), err)
	rep.Record = s.RecordDir
	return rep, err
}

// CachedImages lists this machine's image cache, most recently used
// first, then the partial files a killed run left (Partial set).
func CachedImages(opts Options) ([]ImageEntry, error) {
	c := imageCache(opts)
	all, err := c.List()
	if err != nil {
		return nil, err
	}
	partials, err := c.Partials()
	return append(all, partials...), err
}

// PruneReport is what `cvs image prune` did.
type PruneReport = images.PruneReport

// PruneImages removes cached images last used before now-olderThan (0:
// no age limit) beyond the keep most recent (keep < 0: no limit); never one
// a running cvs uses (those are listed as in use). It reclaims the partial
// files nobody writes any more.
func PruneImages(olderThan time.Duration, keep int, opts Options) (PruneReport, error) {
	var cutoff time.Time
	if olderThan > 0 {
		cutoff = time.Now().Add(-olderThan)
	}
	return imageCache(opts).Prune(cutoff, keep)
}
