package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Cache holds images as docker-save tarballs named by content
// (<repo>_sha256_<image ID>.tar), each with a small JSON sidecar that
// records where it came from and when it was last used.
type Cache struct {
	Dir string
}

// DefaultImageCacheDir is $XDG_CACHE_HOME/cvs/images (~/.cache/cvs/images).
func DefaultImageCacheDir() string {
	return filepath.Join(filepath.Dir(DefaultCacheDir()), "images")
}

// Entry is one cached image, as `cvs image ls` shows it.
type Entry struct {
	File     string    `json:"file"`
	Ref      string    `json:"ref"`
	ImageID  string    `json:"image_id"`
	Digest   string    `json:"digest,omitempty"`
	Platform string    `json:"platform,omitempty"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastused"`
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (c *Cache) file(repo, imageID string) string {
	return filepath.Join(c.Dir, unsafeChars.ReplaceAllString(repo, "_")+"_sha256_"+strings.TrimPrefix(imageID, "sha256:")+".tar")
}

// List returns every cached image, most recently used first.
func (c *Cache) List() ([]Entry, error) {
	matches, err := filepath.Glob(filepath.Join(c.Dir, "*.tar.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var e Entry
		if json.Unmarshal(data, &e) != nil {
			continue
		}
		if _, err := os.Stat(e.File); err != nil {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Find returns the entry whose image ID or manifest digest is id or
// starts with it (with or without "sha256:"). A prefix of several is an
// *AmbiguousError listing them. A reference is not looked up: the cache
// may hold several images of one tag, and a reference is resolved.
func (c *Cache) Find(id string) (Entry, error) {
	all, err := c.List()
	if err != nil {
		return Entry{}, err
	}
	hex := strings.TrimPrefix(id, "sha256:")
	var found []Entry
	for _, e := range all {
		if e.ImageID == id || e.Digest == id {
			return e, nil
		}
		if len(hex) >= 4 && (strings.HasPrefix(strings.TrimPrefix(e.ImageID, "sha256:"), hex) || strings.HasPrefix(strings.TrimPrefix(e.Digest, "sha256:"), hex)) {
			found = append(found, e)
		}
	}
	switch len(found) {
	case 0:
		return Entry{}, fmt.Errorf("no cached image %q (cvs image ls lists them)", id)
	case 1:
		return found[0], nil
	}
	return Entry{}, &AmbiguousError{Prefix: id, Entries: found}
}

// AmbiguousError is a digest prefix that names several cached images.
type AmbiguousError struct {
	Prefix  string
	Entries []Entry
}

func (e *AmbiguousError) Error() string {
	var names []string
	for _, x := range e.Entries {
		names = append(names, fmt.Sprintf("%s %s", ShortDigest(x.ImageID), x.Ref))
	}
	return fmt.Sprintf("%q names %d cached images; give more digits:\n  %s", e.Prefix, len(e.Entries), strings.Join(names, "\n  "))
}

// Use marks e used now and takes a shared lock on it, so that prune leaves
// it alone while a run uses it; release lets it go.
func (c *Cache) Use(e Entry) (release func(), err error) {
	f, err := os.Open(e.File + ".json")
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	e.LastUsed = time.Now().UTC()
	c.writeSidecar(e)
	return func() { f.Close() }, nil
}

func (c *Cache) writeSidecar(e Entry) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	// Written in place: the sidecar is the file others hold locks on.
	f, err := os.OpenFile(e.File+".json", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	return err
}

// Prune removes the entries last used before cutoff (zero: none by age),
// beyond the keep most recently used (keep < 0: no limit), except those a
// running cvs uses. It returns what it removed.
func (c *Cache) Prune(cutoff time.Time, keep int) ([]Entry, error) {
	all, err := c.List()
	if err != nil {
		return nil, err
	}
	var removed []Entry
	for i, e := range all {
		old := !cutoff.IsZero() && e.LastUsed.Before(cutoff)
		over := keep >= 0 && i >= keep
		if !old && !over {
			continue
		}
		f, err := os.Open(e.File + ".json")
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue // in use
		}
		os.Remove(e.File)
		os.Remove(e.File + ".json")
		f.Close()
		removed = append(removed, e)
	}
	return removed, nil
}

// ObtainOptions say where an image may come from.
type ObtainOptions struct {
	// Platform (os/arch) picks the image of a multi-platform index; ""
	// takes linux/amd64 from an index.
	Platform  string
	Keychain  authn.Keychain
	Transport remote.Option
	// DockerSave, when set, saves an image from this machine's Docker
	// daemon into a file (docker save -o FILE REF); nil: the docker CLI.
	DockerSave func(ctx context.Context, ref, file string) error
	// DockerInspect, when set, says what this machine's Docker holds under
	// ref; nil: the docker CLI.
	DockerInspect func(ctx context.Context, ref string) (Inspected, error)
}

// Inspected is what this machine's Docker says of an image.
type Inspected struct {
	// ID is the image ID (the configuration's digest).
	ID string
	// RepoDigests are repo@digest of the manifests (or indexes) Docker
	// pulled it by; empty for an image built or loaded here.
	RepoDigests []string
}

// Obtain returns ref as a cached docker-save tarball: from the cache
// (by digest when given, else the newest entry of the reference), else
// from its registry, else from this machine's Docker daemon. When none has
// it, the error names every place tried.
func (c *Cache) Obtain(ctx context.Context, ref, digest string, o ObtainOptions) (Entry, *Saved, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return Entry{}, nil, err
	}
	var tried []string
	// A multi-platform image is filed under its index digest and the
	// platform: the pin names the index, each platform is its own image.
	for _, e := range c.entries() {
		if (digest != "" && e.Digest == digest && e.Platform == o.Platform) || (digest == "" && e.Ref == ref && e.Platform == o.Platform) {
			if s, err := ReadSaved(e.File); err == nil {
				return e, s, nil
			}
		}
	}
	tried = append(tried, "the cache "+c.Dir+": not there")

	parsed, err := name.ParseReference(ref)
	if err != nil {
		return Entry{}, nil, err
	}
	target := parsed
	if digest != "" {
		target = parsed.Context().Digest(digest)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if o.Transport != nil {
		opts = append(opts, o.Transport)
	}
	if o.Platform != "" {
		p, err := v1.ParsePlatform(o.Platform)
		if err != nil {
			return Entry{}, nil, fmt.Errorf("platform %q: %w", o.Platform, err)
		}
		opts = append(opts, remote.WithPlatform(*p))
	}
	img, err := remote.Image(target, opts...)
	if err == nil {
		tmp, terr := os.CreateTemp(c.Dir, ".obtain.*.tar")
		if terr != nil {
			return Entry{}, nil, terr
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		tag, _ := name.NewTag(parsed.Context().Name() + ":" + tagOf(parsed))
		if err = tarball.WriteToFile(tmp.Name(), tag, img); err == nil {
			d := digest
			if d == "" {
				h, _ := img.Digest()
				d = h.String()
			}
			return c.add(tmp.Name(), ref, d, o.Platform)
		}
	}
	tried = append(tried, fmt.Sprintf("the registry %s: %v", parsed.Context().RegistryStr(), err))

	e, s, err := c.saveLocal(ctx, parsed, ref, digest, o)
	if err == nil {
		return e, s, nil
	}
	tried = append(tried, "this machine's Docker daemon (docker save): "+err.Error())
	return Entry{}, nil, fmt.Errorf("image %s could not be obtained; tried:\n  %s", ref, strings.Join(tried, "\n  "))
}

// saveLocal saves ref from this machine's Docker into the cache. With a
// pinned digest, Docker must say its ref was pulled by that digest (a
// RepoDigest of the same repository), and the tarball must be the image it
// inspected: the cache never files another image under a pin.
func (c *Cache) saveLocal(ctx context.Context, parsed name.Reference, ref, digest string, o ObtainOptions) (Entry, *Saved, error) {
	wantID := ""
	if digest != "" {
		inspect := o.DockerInspect
		if inspect == nil {
			inspect = dockerInspect
		}
		in, err := inspect(ctx, ref)
		if err != nil {
			return Entry{}, nil, err
		}
		if !hasRepoDigest(in.RepoDigests, parsed, digest) {
			names := "none: built or loaded here"
			if len(in.RepoDigests) > 0 {
				names = strings.Join(in.RepoDigests, ", ")
			}
			return Entry{}, nil, fmt.Errorf("%s there is %s, which Docker does not know as the pinned %s (its repo digests: %s); refusing to file it under the pin. Pull the tag there (docker pull %s) or make the registry reachable",
				ref, ShortDigest(in.ID), digest, names, ref)
		}
		wantID = in.ID
	}
	save := o.DockerSave
	if save == nil {
		save = dockerSave
	}
	tmp, err := os.CreateTemp(c.Dir, ".save.*.tar")
	if err != nil {
		return Entry{}, nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := save(ctx, ref, tmp.Name()); err != nil {
		return Entry{}, nil, err
	}
	s, err := ReadSaved(tmp.Name())
	if err != nil {
		return Entry{}, nil, err
	}
	if wantID != "" && s.ImageID != wantID {
		return Entry{}, nil, fmt.Errorf("docker save gave %s, not %s, the image Docker knows as the pinned %s (the tag moved meanwhile?); refusing to file it under the pin",
			ShortDigest(s.ImageID), ShortDigest(wantID), digest)
	}
	return c.add(tmp.Name(), ref, digest, o.Platform)
}

// hasRepoDigest says whether one of repoDigests is ref's repository at
// digest.
func hasRepoDigest(repoDigests []string, ref name.Reference, digest string) bool {
	for _, rd := range repoDigests {
		d, err := name.NewDigest(rd)
		if err == nil && d.DigestStr() == digest && d.Context().Name() == ref.Context().Name() {
			return true
		}
	}
	return false
}

// tagOf is the tag of ref, or a tag made from its digest.
func tagOf(ref name.Reference) string {
	if t, ok := ref.(name.Tag); ok {
		return t.TagStr()
	}
	return "cvs-" + ShortDigest(ref.Identifier())
}

func (c *Cache) entries() []Entry {
	all, _ := c.List()
	return all
}

// add moves a fresh tarball into the cache under its content name.
func (c *Cache) add(tmp, ref, digest, platform string) (Entry, *Saved, error) {
	s, err := ReadSaved(tmp)
	if err != nil {
		return Entry{}, nil, err
	}
	parsed, _ := name.ParseReference(ref)
	repo := ref
	if parsed != nil {
		repo = parsed.Context().RepositoryStr()
	}
	final := c.file(repo, s.ImageID)
	if err := os.Rename(tmp, final); err != nil {
		return Entry{}, nil, err
	}
	s.Path = final
	now := time.Now().UTC()
	e := Entry{File: final, Ref: ref, ImageID: s.ImageID, Digest: digest, Platform: platform, Size: s.Size, Created: now, LastUsed: now}
	if err := c.writeSidecar(e); err != nil {
		return Entry{}, nil, err
	}
	return e, s, nil
}

func dockerInspect(ctx context.Context, ref string) (Inspected, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return Inspected{}, errors.New("no docker command here")
	}
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{json .Id}} {{json .RepoDigests}}", ref).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return Inspected{}, fmt.Errorf("docker image inspect %s: %s", ref, strings.TrimSpace(string(ee.Stderr)))
		}
		return Inspected{}, err
	}
	var in Inspected
	id, digests, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if json.Unmarshal([]byte(id), &in.ID) != nil || json.Unmarshal([]byte(digests), &in.RepoDigests) != nil {
		return Inspected{}, fmt.Errorf("docker image inspect %s: unexpected output %q", ref, out)
	}
	return in, nil
}

func dockerSave(ctx context.Context, ref, file string) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("no docker command here")
	}
	out, err := exec.CommandContext(ctx, "docker", "save", "-o", file, ref).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
