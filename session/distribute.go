package session

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/lifetime"
	"github.com/cvs-tool/cvs/transport"
)

// The time limit of sending and loading the image on one host scales with
// what has to cross this machine's link, rather than being a key: nobody
// knows in advance how long 61 GB takes, and a fixed limit is either too
// short for GPU images (30 minutes was: 61 GB to 64 hosts over one 10 GbE
// link takes about 52) or no limit for small ones. The hosts push at once,
// up to max_parallel of them, sharing this machine's uplink, so one host's
// bytes go at about minPushRate/parallel. minPushRate is a saturated 1 GbE
// link (~110 MB/s after overhead, rounded down): a controller on 10 GbE
// finishes ten times sooner, so the limit only ends pushes that are stuck,
// never slow ones on the links cvs runs over. pushFloor covers what does
// not scale with the link: connecting, the layer query, docker load
// unpacking the last layer, the image ID check.
const (
	pushFloor   = 15 * time.Minute
	minPushRate = 100_000_000 // bytes per second, all parallel pushes together
)

// pushLimit is the time limit of one host's push of bytes while parallel
// hosts push at once.
func pushLimit(bytes int64, parallel int) time.Duration {
	parallel = max(parallel, 1)
	share := float64(bytes) * float64(parallel) / minPushRate
	return pushFloor + time.Duration(share*float64(time.Second)).Round(time.Second)
}

// logPushLimit says the limit a push runs under and how it was computed.
func (s *Session) logPushLimit(limit time.Duration, bytes int64, parallel int) {
	s.log.Info(fmt.Sprintf("push time limit per host: %s (%s + %d bytes × %d host(s) at once / %d MB/s)",
		limit, pushFloor, bytes, parallel, minPushRate/1_000_000))
}

// Push is what pushing the image did on one host.
type Push struct {
	Host string `json:"host"`
	// Platform is the platform of the image sent, when the image is taken
	// from a multi-platform index (or the platform key forces one).
	Platform string `json:"platform,omitempty"`
	// ImageID is the image the host was sent (or held already).
	ImageID string `json:"image_id,omitempty"`
	// Skipped: the host held the image already; nothing was sent.
	Skipped bool `json:"skipped"`
	// Layers is how many of the image's layers were sent, of Total.
	Layers int `json:"layers_sent"`
	Total  int `json:"layers"`
	// Bytes is what was uploaded.
	Bytes int64 `json:"bytes_sent"`
	// Full: the host did not accept a partial tarball; the whole image was
	// sent.
	Full bool `json:"full,omitempty"`
}

// distributeStage sends the image to the hosts that will launch it, when
// the cluster file says distribute = "push": obtained once on this machine
// (once per platform when the hosts are of several architectures), each
// host gets only the layers it lacks of its platform's image, over its SSH
// connection, and docker loads it there; the loaded image ID is checked.
type distributeStage struct {
	setupMark
	// all: every host, whatever the plan (cvs image push).
	all bool
}

func (distributeStage) Name() string { return "push the image" }

func (st distributeStage) hosts(s *Session) []int {
	if s.Config.Container.Distribute != cluster.DistributePush {
		return nil
	}
	var out []int
	for i, hp := range s.Plan.Hosts {
		if st.all || hp.Action == lifetime.Launch || hp.Action == lifetime.Replace {
			out = append(out, i)
		}
	}
	return out
}

func (st distributeStage) Actions(s *Session) []HostAction {
	var out []HostAction
	for _, i := range st.hosts(s) {
		h := s.Config.Hosts[i]
		img := s.Config.Container.Image
		if p := s.platformOf(h); p != "" {
			img += " (" + p + ")"
		}
		how := "send the layers of " + img + " it lacks, docker load"
		if s.Config.Engine.Kind == cluster.EngineSlurm {
			how = "receive the layers of " + img + " some node lacks (sbcast, once for all), docker load"
		}
		out = append(out, HostAction{Host: h.Name, Action: how})
	}
	return out
}

// platformOf is the platform of the image host h is pushed: the one all
// hosts launch, or its own when the hosts are of several architectures
// ("": a single image, nothing chosen).
func (s *Session) platformOf(h cluster.Host) string {
	if p := s.hostPlatform[h.Name]; p != "" {
		return p
	}
	return s.platform
}

// pushGroup is the hosts pushed one image: those of one platform.
type pushGroup struct {
	platform string
	hosts    []cluster.Host
	// at are the hosts' places in the stage's list.
	at    []int
	saved *images.Saved
}

func (st distributeStage) Run(ctx context.Context, s *Session) error {
	idx := st.hosts(s)
	if len(idx) == 0 {
		return nil
	}
	hosts := make([]cluster.Host, len(idx))
	var groups []*pushGroup
	byPlatform := map[string]*pushGroup{}
	for k, i := range idx {
		h := s.Config.Hosts[i]
		hosts[k] = h
		p := s.platformOf(h)
		if s.entry != nil {
			p = s.entry.Platform // cvs image push ID: that image, to every host
		}
		g := byPlatform[p]
		if g == nil {
			g = &pushGroup{platform: p}
			byPlatform[p] = g
			groups = append(groups, g)
		}
		g.hosts, g.at = append(g.hosts, h), append(g.at, k)
	}
	// Every platform's image is obtained before any host is sent one.
	for _, g := range groups {
		saved, err := s.obtain(ctx, g.platform)
		if err != nil {
			return &StageError{Stage: st.Name(), Failures: []HostFailure{{Host: ThisMachine, Err: err}}}
		}
		g.saved = saved
	}
	pushes := make([]Push, len(hosts))
	defer func() {
		s.mu.Lock()
		s.pushes = pushes
		s.mu.Unlock()
	}()
	if s.Config.Engine.Kind == cluster.EngineSlurm {
		for _, g := range groups {
			got, err := s.pushBySbcast(ctx, st.Name(), g.hosts, g.saved, len(groups) > 1)
			for j, k := range g.at {
				pushes[k] = got[j]
				pushes[k].Platform, pushes[k].ImageID = g.platform, g.saved.ImageID
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	// Sized for the whole image (the largest platform's): a host may be
	// sent all of it (a store that cannot take a partial tarball).
	parallel := len(hosts)
	if s.Config.MaxParallel > 0 {
		parallel = min(parallel, s.Config.MaxParallel)
	}
	var size int64
	savedOf := make([]*pushGroup, len(hosts))
	for _, g := range groups {
		size = max(size, g.saved.Size)
		for _, k := range g.at {
			savedOf[k] = g
		}
	}
	limit := pushLimit(size, parallel)
	s.logPushLimit(limit, size, parallel)
	return s.perHost(ctx, st.Name(), hosts, func(ctx context.Context, k int, h cluster.Host, c transport.Conn) (transport.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		g := savedOf[k]
		p, err := s.pushTo(ctx, c, h, g.saved)
		p.Platform, p.ImageID = g.platform, g.saved.ImageID
		pushes[k] = p
		return transport.Result{}, err
	})
}

// launchName is the name a pushed image is loaded as on the hosts, and
// launched by: the tag its tarball carries, else its image ID.
func launchName(saved *images.Saved) string {
	if len(saved.RepoTags) > 0 {
		return saved.RepoTags[0]
	}
	return saved.ImageID
}

// obtain gets the image of platform ("": the only one) into the cache on
// this machine (once per session and platform) and sets the reference the
// hosts launch: the tag the tarball loads as, or its image ID (per host
// when the platforms' images load under different names).
func (s *Session) obtain(ctx context.Context, platform string) (*images.Saved, error) {
	if saved := s.saved[platform]; saved != nil {
		return saved, nil
	}
	cache := s.opts.ImageCache
	if cache == nil {
		cache = &images.Cache{Dir: images.DefaultImageCacheDir()}
	}
	// The entry stays held until the session closes, after every load:
	// an image prune meanwhile leaves it.
	var saved *images.Saved
	var release func()
	var err error
	if s.entry != nil {
		// cvs image push ID: exactly that entry, or nothing.
		e := *s.entry
		release, err = cache.Use(e)
		if err == nil {
			saved, err = images.ReadSaved(e.File)
			if err == nil && saved.ImageID != e.ImageID {
				err = fmt.Errorf("%s holds %s, not %s", e.File, saved.ImageID, e.ImageID)
			}
			if err != nil {
				release()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("the cached image %s cannot be read (%v); nothing else is pushed in its place", images.ShortDigest(e.ImageID), err)
		}
	} else {
		_, saved, release, err = cache.Obtain(ctx, s.Config.Container.Image, s.Digest, images.ObtainOptions{Platform: platform})
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.saved == nil {
		s.saved = map[string]*images.Saved{}
	}
	s.saved[platform] = saved
	s.releaseImages = append(s.releaseImages, release)
	if len(s.saved) == 1 {
		s.Image = launchName(saved)
	}
	s.mu.Unlock()
	args := []any{"image", s.Config.Container.Image, "id", images.ShortDigest(saved.ImageID),
		"layers", len(saved.LayerFiles), "bytes", saved.Size, "file", saved.Path}
	if platform != "" {
		args = append(args, "platform", platform)
	}
	s.log.Info("image ready to push", args...)
	return saved, nil
}

// pushedAs is the name host launches its pushed image by: the one of its
// platform's image (s.Image unless the platforms' images load under
// different names), "" when nothing was pushed to it.
func (s *Session) pushedAs(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pushes {
		if p.Host == host && p.ImageID != "" {
			if saved := s.saved[p.Platform]; saved != nil {
				return launchName(saved)
			}
		}
	}
	return ""
}

// pushTo sends saved to one host: nothing when it holds the image ID,
// else the layers it lacks (by chain ID), and loads it.
func (s *Session) pushTo(ctx context.Context, c transport.Conn, h cluster.Host, saved *images.Saved) (Push, error) {
	e := s.dockerOn(h.Name, c)
	p, send, err := s.lacking(ctx, e, h, saved)
	if err != nil || p.Skipped {
		return p, err
	}
	err = s.sendAndLoad(ctx, e, saved, send, &p)
	if err != nil && len(send) < len(saved.LayerFiles) {
		// A store that cannot complete a partial tarball from its own
		// layers (the containerd image store): send everything.
		s.log.Warn("the host did not load the partial image; sending all of it", "host", h.Name, "err", err)
		all := make([]int, len(saved.LayerFiles))
		for i := range all {
			all[i] = i
		}
		p.Full = true
		err = s.sendAndLoad(ctx, e, saved, all, &p)
	}
	if err != nil {
		return p, err
	}
	s.log.Info(fmt.Sprintf("image pushed: %d of %d layers, %d bytes", p.Layers, p.Total, p.Bytes), "host", h.Name)
	return p, nil
}

// lacking asks host h which of saved's layers it lacks (by chain ID), and
// checks it has room for them. A host that holds the image ID is only
// given the name (Push.Skipped).
func (s *Session) lacking(ctx context.Context, e docker.Engine, h cluster.Host, saved *images.Saved) (Push, []int, error) {
	p := Push{Host: h.Name, Total: len(saved.LayerFiles)}
	layers, err := e.ImageLayers(ctx)
	if err != nil {
		return p, nil, err
	}
	if _, ok := layers[saved.ImageID]; ok {
		// The content is there; make sure the name is too.
		p.Skipped = true
		if as := launchName(saved); as != saved.ImageID {
			if err := e.Tag(ctx, saved.ImageID, as); err != nil {
				return p, nil, fmt.Errorf("naming the image %s: %w", as, err)
			}
		}
		s.log.Info("image already on the host; nothing sent", "host", h.Name)
		return p, nil, nil
	}
	have := map[string]bool{}
	for _, diffs := range layers {
		for _, ch := range images.ChainIDs(diffs) {
			have[ch] = true
		}
	}
	send := saved.Missing(have)
	return p, send, s.checkDisk(h, saved, send)
}

// sendAndLoad streams a tarball with the layers send to the host's daemon
// (no copy of it on this machine; none left on the host) and checks the
// loaded image ID.
func (s *Session) sendAndLoad(ctx context.Context, e docker.Engine, saved *images.Saved, send []int, p *Push) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(saved.WriteDelta(pw, send)) }()
	var n countingReader
	n.r = pr
	err := e.Load(ctx, &n)
	pr.CloseWithError(err)
	p.Bytes += n.n.Load()
	p.Layers = len(send)
	if err != nil {
		return err
	}
	as := launchName(saved)
	got, err := e.ImageID(ctx, as)
	if err != nil || got != saved.ImageID {
		return fmt.Errorf("after docker load, %s is %q, not %s (%v)", as, got, saved.ImageID, err)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// checkDisk refuses to send layers to a host whose Docker root has not the
// room to hold them: the tarball on its way, and the layers unpacked
// (counted as twice their compressed size).
func (s *Session) checkDisk(h cluster.Host, saved *images.Saved, send []int) error {
	for _, f := range s.Facts {
		if f.Host != h.Name || f.HostFacts.DiskFreeKiB < 0 {
			continue
		}
		need := 3 * saved.LayerBytes(send)
		if free := f.HostFacts.DiskFreeKiB << 10; free < need {
			return fmt.Errorf("not enough disk under /var/lib/docker: %d MiB free, about %d MiB needed for the image's %d missing layer(s); free some space there (docker image prune) and run again",
				free>>20, need>>20, len(send))
		}
	}
	return nil
}
