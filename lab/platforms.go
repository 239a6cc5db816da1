package lab

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PlatformIndex is a multi-platform image the lab pushed to its registry.
type PlatformIndex struct {
	// Ref is its tag; Digest the index's digest.
	Ref, Digest string
	// ImageIDs and Manifests are each platform's image ID (configuration
	// digest) and manifest digest, by "os/arch".
	ImageIDs, Manifests map[string]string
}

// PushPlatformIndex pushes to the lab registry, as cvs-lab/workload-multi:tag,
// an image index (a Docker manifest list) of two platforms: linux/amd64 is
// the first workload image itself, linux/arm64 a copy whose configuration
// says arm64. The copy has the same (amd64) layers, so it runs on the lab's
// amd64 hosts: enough to see which platform a host pulled, by image ID.
func (l *Lab) PushPlatformIndex(ctx context.Context, tag string) (PlatformIndex, error) {
	src, err := name.ParseReference(l.WorkloadImage(), name.Insecure)
	if err != nil {
		return PlatformIndex{}, err
	}
	amd, err := remote.Image(src, remote.WithContext(ctx))
	if err != nil {
		return PlatformIndex{}, fmt.Errorf("reading %s from the lab registry: %w", src, err)
	}
	cf, err := amd.ConfigFile()
	if err != nil {
		return PlatformIndex{}, err
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		return PlatformIndex{}, fmt.Errorf("%s is for %s/%s, not linux/amd64", src, cf.OS, cf.Architecture)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, err := mutate.ConfigFile(amd, cf)
	if err != nil {
		return PlatformIndex{}, err
	}
	out := PlatformIndex{Ref: l.Registry() + "/" + workloadRepo + "-multi:" + tag, ImageIDs: map[string]string{}, Manifests: map[string]string{}}
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	for _, p := range []struct {
		arch string
		img  v1.Image
	}{{"amd64", amd}, {"arm64", arm}} {
		id, err := p.img.ConfigName()
		if err != nil {
			return PlatformIndex{}, err
		}
		d, err := p.img.Digest()
		if err != nil {
			return PlatformIndex{}, err
		}
		out.ImageIDs["linux/"+p.arch], out.Manifests["linux/"+p.arch] = id.String(), d.String()
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: p.img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: p.arch}}})
	}
	dst, err := name.ParseReference(out.Ref, name.Insecure)
	if err != nil {
		return PlatformIndex{}, err
	}
	if err := remote.WriteIndex(dst, idx, remote.WithContext(ctx)); err != nil {
		return PlatformIndex{}, fmt.Errorf("pushing %s to the lab registry: %w", out.Ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return PlatformIndex{}, err
	}
	out.Digest = d.String()
	return out, nil
}
