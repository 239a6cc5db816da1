package session

import (
	"context"
	"fmt"
	"time"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/exitcode"
	"github.com/cvs-tool/cvs/history"
	"github.com/cvs-tool/cvs/images"
	"github.com/cvs-tool/cvs/report"
	"github.com/google/go-containerregistry/pkg/name"
)

// failTTL is how long a failed resolution is remembered.
const failTTL = time.Minute

// pin resolves the configured image to its manifest digest, once for the
// whole run, so that every host launches the same content (Image becomes
// repo@digest). The registry is asked at every invocation; the digest
// cache answers only when it cannot (within pin_ttl), and the log says so. With pin = "prefer" a tag that cannot be resolved is
// launched as it is, after a loud warning; with "required" the run stops
// before any change (exit 3).
func (s *Session) pin(ctx context.Context) error {
	ct := s.Config.Container
	if ct.Pin == cluster.PinOff || ct.Image == "" || ct.Lifetime == cluster.LifetimeNoLaunch {
		return nil
	}
	r := s.opts.Resolver
	if r == nil {
		r = &images.Resolver{CacheDir: images.DefaultCacheDir(), TTL: ct.PinTTL, FailTTL: failTTL, Timeout: ct.PinTimeout}
	}
	res, err := r.Resolve(ctx, ct.Image)
	if err != nil {
		if ct.Pin == cluster.PinRequired {
			return exitcode.With(exitcode.Preflight, fmt.Errorf("pin = \"required\" and %v; nothing was changed. Check the registry and its credentials (~/.docker/config.json), or set pin = \"prefer\"", err))
		}
		s.log.Warn(fmt.Sprintf("%v: the hosts launch the tag %s as it is, so a re-push during the run could give hosts different content (pin = \"prefer\"; \"required\" refuses instead)", err, ct.Image))
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.Digest, s.imageBytes, s.index, s.single = res.Digest, res.Size, res.Index, res.Platform
	if ct.Distribute != cluster.DistributePush {
		// Pushed images are loaded under their tag, which is what the
		// hosts then launch; the digest picks the content.
		s.Image = res.Pinned
	}
	if res.Previous != "" {
		s.log.Warn(fmt.Sprintf("%s was re-pushed: it now names %s; the digest cache held %s", ct.Image, res.Digest, res.Previous))
	} else if prev := history.Previous(ct.Image); prev != "" && prev != res.Digest {
		s.log.Warn(fmt.Sprintf("%s now resolves to %s; the last recorded run used %s: the tag was re-pushed since", ct.Image, res.Digest, prev))
	}
	from := "registry"
	if res.FromCache {
		from = "cache (" + res.Fallback + ")"
	}
	s.log.Info("image pinned", "image", ct.Image, "digest", res.Digest, "from", from)
	return nil
}

// choosePlatform decides, from the probed hosts' architectures, which
// platform of a multi-platform image they launch (or the one the platform
// key forces), before anything changes: hosts that need a platform the
// index lacks, or a single image of another platform than the hosts' (or
// than the key's), are a preflight failure (exit 3). A forced platform is
// launched by its manifest digest (each host would else take its own) and
// given to docker run (--platform), also when the image is not pinned.
// With distribute = "push" the platform picks the image obtained; hosts of
// several architectures are each sent their own.
func (s *Session) choosePlatform() error {
	ct := s.Config.Container
	if ct.Lifetime == cluster.LifetimeNoLaunch || (s.index == nil && s.single == "" && ct.Platform == "") {
		return nil
	}
	hosts := make([]images.HostArch, 0, len(s.Facts))
	for _, f := range s.Facts {
		hosts = append(hosts, images.HostArch{Host: f.Host, Arch: f.HostFacts.Arch})
	}
	choice, err := images.ChoosePlatform(ct.Platform, hosts, s.index, s.single)
	if err != nil {
		return exitcode.With(exitcode.Preflight, fmt.Errorf("image %s: %v; nothing was changed", ct.Image, err))
	}
	// Each host takes its own platform's image: the image check compares
	// the hosts of one platform.
	s.hostPlatform = choice.Hosts
	if choice.Hosts != nil && ct.Distribute == cluster.DistributePush {
		var unknown []string
		for _, h := range hosts {
			if choice.Hosts[h.Host] == "" {
				unknown = append(unknown, h.Host)
			}
		}
		if len(unknown) > 0 {
			return exitcode.With(exitcode.Preflight, fmt.Errorf("image %s: the hosts are of several architectures, each is pushed the image of its own, and the architecture of %s is unknown (uname -m); set [container] platform, or use distribute = \"pull\"; nothing was changed",
				ct.Image, report.HostList(unknown)))
		}
		s.log.Info("image platforms: each host is pushed the image of its architecture", "image", ct.Image, "hosts", len(choice.Hosts))
	}
	s.platform = choice.Platform
	if ct.Platform != "" && choice.Manifest != "" && ct.Distribute != cluster.DistributePush {
		ref, err := name.ParseReference(ct.Image)
		if err == nil {
			s.Image = ref.Context().Name() + "@" + choice.Manifest
		}
	}
	if s.platform != "" {
		s.log.Info("image platform", "image", ct.Image, "platform", s.platform, "forced", ct.Platform != "")
	}
	return nil
}
