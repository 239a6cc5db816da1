package images

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func savedImage(t *testing.T, img v1.Image, tag string) *Saved {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.tar")
	ref, _ := name.NewTag(tag)
	if err := tarball.WriteToFile(p, ref, img); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSaved(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The image ID read from the tarball is the one Docker computes (the
// config digest); the diff IDs are the layers', base first.
func TestReadSaved(t *testing.T) {
	img, _ := random.Image(512, 3)
	s := savedImage(t, img, "reg:5000/w:1")
	id, _ := img.ConfigName()
	if s.ImageID != id.String() || len(s.DiffIDs) != 3 || len(s.LayerFiles) != 3 || s.RepoTags[0] != "reg:5000/w:1" {
		t.Fatalf("saved = %+v (want ID %s)", s, id)
	}
	layers, _ := img.Layers()
	for i, l := range layers {
		d, _ := l.DiffID()
		if s.DiffIDs[i] != d.String() {
			t.Errorf("layer %d: diff ID %s, want %s", i, s.DiffIDs[i], d)
		}
	}
}

// A derived image (one layer on top of a base) sent to a host that has
// the base: only the top layer travels, with the full manifest and config.
func TestDeltaSendsOnlyMissingLayers(t *testing.T) {
	base, _ := random.Image(4096, 2)
	top, _ := random.Layer(512, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	derived, err := mutate.AppendLayers(base, top)
	if err != nil {
		t.Fatal(err)
	}
	s := savedImage(t, derived, "reg:5000/w:2")
	baseLayers, _ := base.Layers()
	var baseDiffs []string
	for _, l := range baseLayers {
		d, _ := l.DiffID()
		baseDiffs = append(baseDiffs, d.String())
	}
	have := map[string]bool{}
	for _, c := range ChainIDs(baseDiffs) {
		have[c] = true
	}
	missing := s.Missing(have)
	if len(missing) != 1 || missing[0] != 2 {
		t.Fatalf("missing = %v, want [2]", missing)
	}
	// A layer with the same diff ID on another base is another layer.
	if m := s.Missing(map[string]bool{s.DiffIDs[2]: true}); len(m) != 3 {
		t.Errorf("chain IDs ignored: missing %v", m)
	}

	var delta bytes.Buffer
	if err := s.WriteDelta(&delta, missing); err != nil {
		t.Fatal(err)
	}
	names := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(delta.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h.Size
	}
	if _, ok := names["manifest.json"]; !ok {
		t.Error("no manifest.json in the delta")
	}
	if _, ok := names[s.ConfigFile]; !ok {
		t.Error("no config in the delta")
	}
	for i, f := range s.LayerFiles {
		_, sent := names[f]
		if sent != (i == 2) {
			t.Errorf("layer %d sent: %v", i, sent)
		}
	}
	if int64(delta.Len()) >= s.Size/2 {
		t.Errorf("delta %d bytes of a %d-byte image", delta.Len(), s.Size)
	}
}

// The cache obtains from the registry once, finds by digest prefix, lists
// with lastused, and prunes what was not used lately, never what is in use.
func TestCacheObtainFindPrune(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	d := push(t, ref)
	c := &Cache{Dir: t.TempDir()}
	e, s, release, err := c.Obtain(context.Background(), ref, d.String(), ObtainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Digest != d.String() || !strings.Contains(filepath.Base(e.File), "_sha256_"+strings.TrimPrefix(s.ImageID, "sha256:")) {
		t.Errorf("entry %+v", e)
	}
	hits := reg.hits.Load()
	if e2, _, release2, err := c.Obtain(context.Background(), ref, d.String(), ObtainOptions{}); err != nil || e2.File != e.File || reg.hits.Load() != hits {
		t.Errorf("second obtain went to the registry: %v", err)
	} else {
		release2()
	}
	if got, err := c.Find(strings.TrimPrefix(d.String(), "sha256:")[:8]); err != nil || got.File != e.File {
		t.Errorf("find by prefix: %v", err)
	}
	// Not obtainable anywhere: every place tried is named.
	_, _, _, err = c.Obtain(context.Background(), reg.host+"/team/none:1", "", ObtainOptions{
		DockerSave: func(context.Context, string, string) error { return os.ErrNotExist }})
	if err == nil || !strings.Contains(err.Error(), "the cache") || !strings.Contains(err.Error(), "the registry") || !strings.Contains(err.Error(), "docker save") {
		t.Errorf("unobtainable: %v", err)
	}

	if pruned, _ := c.Prune(time.Now().Add(time.Hour), -1); len(pruned.Removed) != 0 {
		t.Errorf("pruned an image in use: %v", pruned.Removed)
	}
	release()
	if pruned, _ := c.Prune(time.Now().Add(time.Hour), -1); len(pruned.Removed) != 1 {
		t.Errorf("prune removed %d", len(pruned.Removed))
	}
	if all, _ := c.List(); len(all) != 0 {
		t.Errorf("left: %v", all)
	}
}

// Issue 21 item 3: with the registry unreachable, the image saved from
// this machine's Docker is filed under the pinned digest only when Docker
// says the tag is that digest (its RepoDigests) and the tarball is the
// image Docker inspected; else the obtain is refused and nothing cached.
func TestDockerSaveFallbackVerifiedAgainstThePin(t *testing.T) {
	ref := "reg.example:5000/team/work:1"
	pinnedImg, _ := random.Image(256, 1)
	otherImg, _ := random.Image(256, 1)
	pin, _ := pinnedImg.Digest()
	rd := &redirect{host: "127.0.0.1:1"}
	rd.down.Store(true)
	down := remote.WithTransport(rd)
	saveOf := func(img v1.Image) func(context.Context, string, string) error {
		return func(_ context.Context, ref, file string) error {
			tag, _ := name.NewTag(ref)
			return tarball.WriteToFile(file, tag, img)
		}
	}
	idOf := func(img v1.Image) string { id, _ := img.ConfigName(); return id.String() }
	for _, tc := range []struct {
		name    string
		saved   v1.Image
		inspect Inspected
		ok      bool
	}{
		// Docker's tag is the pinned image: cached under the pin.
		{"verified", pinnedImg, Inspected{ID: idOf(pinnedImg), RepoDigests: []string{"reg.example:5000/team/work@" + pin.String()}}, true},
		// Docker's tag is another image (re-pushed, or built here).
		{"another digest", otherImg, Inspected{ID: idOf(otherImg), RepoDigests: []string{"reg.example:5000/team/work@sha256:" + strings.Repeat("0", 64)}}, false},
		// Built here, never pulled: no digest to check.
		{"no repo digest", otherImg, Inspected{ID: idOf(otherImg)}, false},
		// The tag moved between inspect and save.
		{"moved during save", otherImg, Inspected{ID: idOf(pinnedImg), RepoDigests: []string{"reg.example:5000/team/work@" + pin.String()}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir()}
			inspect := tc.inspect
			e, _, _, err := c.Obtain(context.Background(), ref, pin.String(), ObtainOptions{Transport: down, DockerSave: saveOf(tc.saved),
				DockerInspect: func(context.Context, string) (Inspected, error) { return inspect, nil }})
			if tc.ok {
				if err != nil || e.Digest != pin.String() || e.ImageID != idOf(pinnedImg) {
					t.Fatalf("obtain: %+v %v", e, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), pin.String()) {
				t.Errorf("filed %+v under the pin %s (err %v)", e, pin, err)
			}
			if all, _ := c.List(); len(all) != 0 {
				t.Errorf("cached: %+v", all)
			}
		})
	}
}

// Issue 21 item 12 (seed 004): every use of a cache entry stamps lastused
// in its sidecar, a hit of Obtain included (the session Uses what it
// obtains).
func TestUseStampsLastUsed(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	d := push(t, ref)
	c := &Cache{Dir: t.TempDir()}
	e, _, _, err := c.Obtain(context.Background(), ref, d.String(), ObtainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		e.LastUsed = old
		if err := c.writeSidecar(e); err != nil {
			t.Fatal(err)
		}
		hit, _, _, err := c.Obtain(context.Background(), ref, d.String(), ObtainOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now().Add(-time.Second)
		release, err := c.Use(hit)
		if err != nil {
			t.Fatal(err)
		}
		release()
		all, _ := c.List()
		if len(all) != 1 || all[0].LastUsed.Before(before) {
			t.Errorf("use %d: lastused %v, want now", i+1, all[0].LastUsed)
		}
		raw, _ := os.ReadFile(e.File + ".json")
		if !strings.Contains(string(raw), `"lastused"`) {
			t.Errorf("sidecar: %s", raw)
		}
	}
}

// The docker-save fallback saves whatever platform this machine's Docker
// pulled; for hosts of another platform that image is refused, never filed
// under their platform (found by review: an amd64 controller, arm64 hosts,
// the registry down).
func TestDockerSaveFallbackChecksThePlatform(t *testing.T) {
	ref := "reg.example:5000/team/work:1"
	base, _ := random.Image(256, 1)
	cf, _ := base.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	amd64Img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	rd := &redirect{host: "127.0.0.1:1"}
	rd.down.Store(true)
	save := func(_ context.Context, ref, file string) error {
		tag, _ := name.NewTag(ref)
		return tarball.WriteToFile(file, tag, amd64Img)
	}
	for _, tc := range []struct {
		platform string
		ok       bool
	}{{"linux/arm64", false}, {"linux/amd64", true}, {"", true}} {
		c := &Cache{Dir: t.TempDir()}
		e, _, release, err := c.Obtain(context.Background(), ref, "", ObtainOptions{Platform: tc.platform, Transport: remote.WithTransport(rd), DockerSave: save})
		if release != nil {
			release()
		}
		if tc.ok != (err == nil) {
			t.Errorf("platform %q: entry %+v, err %v; want ok=%v", tc.platform, e, err, tc.ok)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "linux/amd64")) {
			t.Errorf("platform %q: the refusal does not name the image's platform: %v", tc.platform, err)
		}
	}
}
