package images

import (
	"context"
	"strings"
	"testing"

	"github.com/cvs-tool/cvs/internal/imagetest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Issue 21 item 2: the platform the hosts launch, from their
// architectures, the image index and the platform key.
func TestChoosePlatform(t *testing.T) {
	both := []PlatformManifest{{"linux/amd64", "sha256:a"}, {"linux/arm64", "sha256:b"}}
	amd := []PlatformManifest{{"linux/amd64", "sha256:a"}}
	hosts := func(archs ...string) []HostArch {
		var out []HostArch
		for i, a := range archs {
			out = append(out, HostArch{Host: "n" + string(rune('1'+i)), Arch: a})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		forced   string
		hosts    []HostArch
		index    []PlatformManifest
		single   string // a single image's platform ("" unknown)
		platform string
		manifest string
		err      []string // every one in the error; nil: no error
	}{
		{"not an index: nothing to choose", "", hosts("amd64", "arm64"), nil, "", "", "", nil},
		{"uniform arm64 hosts", "", hosts("arm64", "arm64"), both, "", "linux/arm64", "sha256:b", nil},
		{"uniform amd64 hosts", "", hosts("amd64", "amd64"), both, "", "linux/amd64", "sha256:a", nil},
		{"mixed, the index has both: each its own", "", hosts("amd64", "arm64"), both, "", "", "", nil},
		{"mixed, the index lacks arm64", "", hosts("amd64", "arm64", "arm64"), amd, "", "", "", []string{"n1 (amd64)", "n[2-3] (arm64)", "linux/amd64"}},
		{"uniform, the index lacks it", "", hosts("ppc64le"), both, "", "", "", []string{"n1 (ppc64le)", "linux/amd64, linux/arm64"}},
		{"unknown archs are not counted", "", hosts("", "arm64"), both, "", "linux/arm64", "sha256:b", nil},
		{"all unknown", "", hosts("", ""), both, "", "", "", nil},
		{"forced", "linux/arm64", hosts("amd64", "amd64"), both, "", "linux/arm64", "sha256:b", nil},
		{"forced, not in the index", "linux/s390x", hosts("s390x"), both, "", "", "", []string{"linux/s390x", "linux/amd64, linux/arm64"}},
		{"forced, not an index", "linux/arm64", hosts("amd64"), nil, "", "linux/arm64", "", nil},
		{"single amd64 image, amd64 hosts", "", hosts("amd64", "amd64"), nil, "linux/amd64", "", "", nil},
		{"single amd64 image, arm64 hosts", "", hosts("arm64", "arm64"), nil, "linux/amd64", "", "", []string{"n[1-2] (arm64)", "linux/amd64", "[container] platform"}},
		{"single amd64 image, mixed hosts", "", hosts("amd64", "arm64"), nil, "linux/amd64", "", "", []string{"n2 (arm64)", "linux/amd64"}},
		{"single amd64 image, unknown archs", "", hosts("", ""), nil, "linux/amd64", "", "", nil},
		{"single amd64 image, forced arm64", "linux/arm64", hosts("amd64"), nil, "linux/amd64", "", "", []string{`platform = "linux/arm64"`, "linux/amd64", "n1 (amd64)"}},
		{"single amd64 image, forced amd64 on arm64 hosts", "linux/amd64", hosts("arm64"), nil, "linux/amd64", "linux/amd64", "", nil},
		{"single arm/v7 image, forced linux/arm", "linux/arm", hosts("arm"), nil, "linux/arm/v7", "linux/arm", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChoosePlatform(tc.forced, tc.hosts, tc.index, tc.single)
			if tc.err == nil {
				if err != nil || got.Platform != tc.platform || got.Manifest != tc.manifest {
					t.Errorf("got %+v %v, want %s %s", got, err, tc.platform, tc.manifest)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, chose %+v", got)
			}
			for _, w := range tc.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q missing from %v", w, err)
				}
			}
		})
	}
}

// pushIndex puts an image index of linux/amd64 and linux/arm64 at ref and
// returns it with its images.
func pushIndex(t *testing.T, ref string, opts ...remote.Option) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	imgs := map[string]v1.Image{}
	idx := v1.ImageIndex(empty.Index)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		imgs["linux/"+arch] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		t.Fatal(err)
	}
	return idx, imgs
}

// A tag that names an index resolves to the index digest and lists its
// platforms with their manifest digests, also from the cache.
func TestResolveIndexListsPlatforms(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/multi:1"
	idx, imgs := pushIndex(t, ref)
	id, _ := idx.Digest()
	rd := &redirect{host: reg.host}
	r := newResolver(t)
	r.Transport = rd
	for _, from := range []string{"registry", "cache"} {
		rd.down.Store(from == "cache")
		res, err := r.Resolve(context.Background(), ref)
		if err != nil || res.Digest != id.String() || len(res.Index) != 2 {
			t.Fatalf("from the %s: %+v %v", from, res, err)
		}
		for _, pm := range res.Index {
			d, _ := imgs[pm.Platform].Digest()
			if pm.Digest != d.String() {
				t.Errorf("from the %s: %s is %s, want %s", from, pm.Platform, pm.Digest, d)
			}
		}
	}
}

// Issue 21 item 2: the cache keys a multi-platform image by the index
// digest and the platform: each platform is obtained once, and found again
// with the registry down.
func TestObtainKeysByIndexDigestAndPlatform(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/multi:1"
	idx, imgs := pushIndex(t, ref)
	id, _ := idx.Digest()
	c := &Cache{Dir: t.TempDir()}
	for _, p := range []string{"linux/arm64", "linux/amd64"} {
		e, s, _, err := c.Obtain(context.Background(), ref, id.String(), ObtainOptions{Platform: p})
		want, _ := imgs[p].ConfigName()
		if err != nil || e.Digest != id.String() || e.Platform != p || s.ImageID != want.String() {
			t.Fatalf("%s: %+v %v (want image %s)", p, e, err, want)
		}
	}
	rd := &redirect{host: reg.host}
	rd.down.Store(true)
	for _, p := range []string{"linux/arm64", "linux/amd64"} {
		e, s, _, err := c.Obtain(context.Background(), ref, id.String(), ObtainOptions{Platform: p, Transport: remote.WithTransport(rd),
			DockerSave: func(context.Context, string, string) error { t.Error("docker save asked"); return context.Canceled }})
		want, _ := imgs[p].ConfigName()
		if err != nil || e.Platform != p || s.ImageID != want.String() {
			t.Errorf("%s from the cache: %+v %v", p, e, err)
		}
	}
}

// Hosts of several architectures with an index that has them all each
// take their own platform: the choice says which, for pushing.
func TestChoosePlatformPerHost(t *testing.T) {
	both := []PlatformManifest{{"linux/amd64", "sha256:a"}, {"linux/arm64", "sha256:b"}}
	got, err := ChoosePlatform("", []HostArch{{"n1", "amd64"}, {"n2", "arm64"}, {"n3", ""}, {"n4", "arm64"}}, both, "")
	want := map[string]string{"n1": "linux/amd64", "n2": "linux/arm64", "n4": "linux/arm64"}
	if err != nil || got.Platform != "" || len(got.Hosts) != len(want) {
		t.Fatalf("got %+v %v, want %v", got, err, want)
	}
	for h, p := range want {
		if got.Hosts[h] != p {
			t.Errorf("%s: %q, want %s", h, got.Hosts[h], p)
		}
	}
}

// Issue 21 item 2: a single image (no index) resolves with the platform
// its configuration names, also from the cache; an image whose
// configuration names none has no platform.
func TestResolveSingleImageKnowsItsPlatform(t *testing.T) {
	reg := newRegistry(t, "", "")
	amd := reg.host + "/team/amd:1"
	r0, _ := name.ParseReference(amd)
	if err := remote.Write(r0, imagetest.OfPlatform(t, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	plain := reg.host + "/team/plain:1"
	push(t, plain)
	rd := &redirect{host: reg.host}
	r := newResolver(t)
	r.Transport = rd
	for _, from := range []string{"registry", "cache"} {
		rd.down.Store(from == "cache")
		res, err := r.Resolve(context.Background(), amd)
		if err != nil || res.Platform != "linux/amd64" || res.Index != nil {
			t.Errorf("from the %s: %+v %v", from, res, err)
		}
		res, err = r.Resolve(context.Background(), plain)
		if err != nil || res.Platform != "" {
			t.Errorf("no platform in the config, from the %s: %+v %v", from, res, err)
		}
	}
}

// Issue 21 item 2: the cache never files a single image of another
// platform under the platform asked for (remote.WithPlatform takes a
// single image whatever it is).
func TestObtainRefusesASingleImageOfAnotherPlatform(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/amd:1"
	r0, _ := name.ParseReference(ref)
	if err := remote.Write(r0, imagetest.OfPlatform(t, "linux/amd64")); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: t.TempDir()}
	noSave := func(context.Context, string, string) error { return context.Canceled }
	_, _, _, err := c.Obtain(context.Background(), ref, "", ObtainOptions{Platform: "linux/arm64", DockerSave: noSave,
		DockerInspect: func(context.Context, string) (Inspected, error) { return Inspected{}, context.Canceled }})
	if err == nil || !strings.Contains(err.Error(), "linux/amd64") || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("an amd64 image obtained as linux/arm64: %v", err)
	}
	if all, _ := c.List(); len(all) != 0 {
		t.Errorf("filed: %+v", all)
	}
	if _, _, release, err := c.Obtain(context.Background(), ref, "", ObtainOptions{Platform: "linux/amd64", DockerSave: noSave}); err != nil {
		t.Errorf("as linux/amd64: %v", err)
	} else {
		release()
	}
}
