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

	"github.com/cvs-tool/cvs/internal/xdg"
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
	// TempDir is where a run writes the tarball it sends with sbcast
	// (PushTempPattern); "": os.TempDir(). Prune reclaims the ones left.
	TempDir string
}

// Partial files: a tarball being fetched or saved into the cache, and the
// tarball a Slurm push writes to send with sbcast. A kill (or a second
// Ctrl-C) leaves them behind; Partials lists them and Prune reclaims them.
const (
	obtainPattern = ".obtain.*.tar"
	savePattern   = ".save.*.tar"
	// PushTempPattern names the tarball a push writes in TempDir.
	PushTempPattern = "cvs-push-*.tar"
)

// partialAge is how long a partial file stays untouched before Prune may
// take it, besides not being locked. The lock alone is not enough: docker
// save -o writes its own temporary file and renames it onto ours, so the
// file we locked is not the one on disk for a moment. A writer that
// writes does not leave its file untouched for an hour (a fetch or a save
// writes as bytes arrive), and a file sbcast reads stays locked by its run.
// An hour also matches the sweep of cvs's temporary folders on the hosts.
const partialAge = time.Hour

// NewPartial creates a partial file in dir (os.CreateTemp's pattern) and
// holds a lock on it until it is closed, so that Prune leaves it alone
// while it is written or read.
func NewPartial(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

func (c *Cache) tempDir() string {
	if c.TempDir != "" {
		return c.TempDir
	}
	return os.TempDir()
}

// Partials returns the partial files of the cache and of its TempDir
// (Partial set, Size their size so far, Created and LastUsed their last
// write), oldest first.
func (c *Cache) Partials() ([]Entry, error) {
	var paths []string
	for _, g := range []string{filepath.Join(c.Dir, obtainPattern), filepath.Join(c.Dir, savePattern), filepath.Join(c.tempDir(), PushTempPattern)} {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, err
		}
		paths = append(paths, m...)
	}
	var out []Entry
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Entry{File: p, Size: fi.Size(), Created: fi.ModTime().UTC(), LastUsed: fi.ModTime().UTC(), Partial: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.Before(out[j].LastUsed) })
	return out, nil
}

// PruneReport is what Prune did.
type PruneReport struct {
	// Removed are the images removed.
	Removed []Entry `json:"removed"`
	// InUse are images the limits selected but a running cvs holds; they
	// were left.
	InUse []Entry `json:"in_use"`
	// Partials are the partial files reclaimed (see Partials).
	Partials []Entry `json:"partials"`
}

// DefaultImageCacheDir is $XDG_CACHE_HOME/cvs/images (~/.cache/cvs/images).
func DefaultImageCacheDir() string {
	dir, _ := xdg.Cache("images")
	return dir
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
	// Partial: not an image but a partial file (see Cache.Partials); File
	// and Size say which and how big.
	Partial bool `json:"partial,omitempty"`
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

// Use holds entry e as Obtain's entries come held (Prune leaves it until
// release is called) and records its use (lastused).
func (c *Cache) Use(e Entry) (release func(), err error) {
	held, err := c.hold(e.File, false)
	if err != nil {
		return nil, err
	}
	e.LastUsed = time.Now().UTC()
	c.writeSidecar(e)
	return func() { held.Close() }, nil
}

// errGone: the entry was removed before its lock was taken.
var errGone = errors.New("the cache entry was removed")

// hold takes a shared lock on the entry whose tarball is file (a lock on
// its sidecar), which Prune respects; closing the returned file lets it
// go. With create, the sidecar is made when absent (an entry being
// added). A prune that removed the entry between the open and the lock
// is noticed: errGone, or with create a fresh sidecar.
func (c *Cache) hold(file string, create bool) (*os.File, error) {
	flags := os.O_RDONLY
	if create {
		flags = os.O_RDWR | os.O_CREATE
	}
	for {
		f, err := os.OpenFile(file+".json", flags, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
			f.Close()
			return nil, err
		}
		var held, now syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(file+".json", &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, nil
		}
		f.Close()
		if !create {
			return nil, errGone
		}
	}
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
// running cvs holds (from obtaining them to loading them), which it lists
// as in use. It also reclaims the partial files nobody writes: not locked
// by their writer and untouched for partialAge.
func (c *Cache) Prune(cutoff time.Time, keep int) (PruneReport, error) {
	var rep PruneReport
	all, err := c.List()
	if err != nil {
		return rep, err
	}
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
			rep.InUse = append(rep.InUse, e)
			continue
		}
		os.Remove(e.File)
		os.Remove(e.File + ".json")
		f.Close()
		rep.Removed = append(rep.Removed, e)
	}
	partials, err := c.Partials()
	if err != nil {
		return rep, err
	}
	for _, e := range partials {
		if time.Since(e.LastUsed) < partialAge {
			continue
		}
		f, err := os.Open(e.File)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil && os.Remove(e.File) == nil {
			rep.Partials = append(rep.Partials, e)
		}
		f.Close()
	}
	return rep, nil
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
//
// The entry comes held (its lastused set to now): Prune leaves it until
// release is called, which the caller does once the hosts loaded it.
func (c *Cache) Obtain(ctx context.Context, ref, digest string, o ObtainOptions) (e Entry, s *Saved, release func(), err error) {
	var held *os.File
	e, s, held, err = c.obtain(ctx, ref, digest, o)
	if err != nil {
		return Entry{}, nil, nil, err
	}
	return e, s, func() { held.Close() }, nil
}

func (c *Cache) obtain(ctx context.Context, ref, digest string, o ObtainOptions) (Entry, *Saved, *os.File, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return Entry{}, nil, nil, err
	}
	var tried []string
	// A multi-platform image is filed under its index digest and the
	// platform: the pin names the index, each platform is its own image.
	for _, e := range c.entries() {
		if (digest != "" && e.Digest == digest && e.Platform == o.Platform) || (digest == "" && e.Ref == ref && e.Platform == o.Platform) {
			held, err := c.hold(e.File, false)
			if err != nil {
				continue // pruned meanwhile
			}
			if s, err := ReadSaved(e.File); err == nil {
				e.LastUsed = time.Now().UTC()
				c.writeSidecar(e)
				return e, s, held, nil
			}
			held.Close()
		}
	}
	tried = append(tried, "the cache "+c.Dir+": not there")

	parsed, err := name.ParseReference(ref)
	if err != nil {
		return Entry{}, nil, nil, err
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
			return Entry{}, nil, nil, fmt.Errorf("platform %q: %w", o.Platform, err)
		}
		opts = append(opts, remote.WithPlatform(*p))
	}
	img, err := remote.Image(target, opts...)
	if err == nil && o.Platform != "" {
		// A single image comes whatever the platform asked for.
		err = imageFor(img, o.Platform)
	}
	if err == nil {
		tmp, terr := NewPartial(c.Dir, obtainPattern)
		if terr != nil {
			return Entry{}, nil, nil, terr
		}
		defer tmp.Close()
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

	e, s, held, err := c.saveLocal(ctx, parsed, ref, digest, o)
	if err == nil {
		return e, s, held, nil
	}
	tried = append(tried, "this machine's Docker daemon (docker save): "+err.Error())
	return Entry{}, nil, nil, fmt.Errorf("image %s could not be obtained; tried:\n  %s", ref, strings.Join(tried, "\n  "))
}

// saveLocal saves ref from this machine's Docker into the cache. With a
// pinned digest, Docker must say its ref was pulled by that digest (a
// RepoDigest of the same repository), and the tarball must be the image it
// inspected: the cache never files another image under a pin.
func (c *Cache) saveLocal(ctx context.Context, parsed name.Reference, ref, digest string, o ObtainOptions) (Entry, *Saved, *os.File, error) {
	wantID := ""
	if digest != "" {
		inspect := o.DockerInspect
		if inspect == nil {
			inspect = dockerInspect
		}
		in, err := inspect(ctx, ref)
		if err != nil {
			return Entry{}, nil, nil, err
		}
		if !hasRepoDigest(in.RepoDigests, parsed, digest) {
			names := "none: built or loaded here"
			if len(in.RepoDigests) > 0 {
				names = strings.Join(in.RepoDigests, ", ")
			}
			return Entry{}, nil, nil, fmt.Errorf("%s there is %s, which Docker does not know as the pinned %s (its repo digests: %s); refusing to file it under the pin. Pull the tag there (docker pull %s) or make the registry reachable",
				ref, ShortDigest(in.ID), digest, names, ref)
		}
		wantID = in.ID
	}
	save := o.DockerSave
	if save == nil {
		save = dockerSave
	}
	tmp, err := NewPartial(c.Dir, savePattern)
	if err != nil {
		return Entry{}, nil, nil, err
	}
	defer tmp.Close()
	defer os.Remove(tmp.Name())
	if err := save(ctx, ref, tmp.Name()); err != nil {
		return Entry{}, nil, nil, err
	}
	s, err := ReadSaved(tmp.Name())
	if err != nil {
		return Entry{}, nil, nil, err
	}
	if wantID != "" && s.ImageID != wantID {
		return Entry{}, nil, nil, fmt.Errorf("docker save gave %s, not %s, the image Docker knows as the pinned %s (the tag moved meanwhile?); refusing to file it under the pin",
			ShortDigest(s.ImageID), ShortDigest(wantID), digest)
	}
	if err := checkPlatform(tmp.Name(), ref, o.Platform); err != nil {
		return Entry{}, nil, nil, err
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

// add moves a fresh tarball into the cache under its content name and
// returns the entry held (see hold): its sidecar is made and locked before
// the tarball appears, so no prune sees the entry unheld.
func (c *Cache) add(tmp, ref, digest, platform string) (Entry, *Saved, *os.File, error) {
	s, err := ReadSaved(tmp)
	if err != nil {
		return Entry{}, nil, nil, err
	}
	parsed, _ := name.ParseReference(ref)
	repo := ref
	if parsed != nil {
		repo = parsed.Context().RepositoryStr()
	}
	final := c.file(repo, s.ImageID)
	now := time.Now().UTC()
	e := Entry{File: final, Ref: ref, ImageID: s.ImageID, Digest: digest, Platform: platform, Size: s.Size, Created: now, LastUsed: now}
	held, err := c.hold(final, true)
	if err != nil {
		return Entry{}, nil, nil, err
	}
	if err := c.writeSidecar(e); err != nil {
		held.Close()
		return Entry{}, nil, nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		held.Close()
		return Entry{}, nil, nil, err
	}
	s.Path = final
	return e, s, held, nil
}

// imageFor says why img is not for platform (its configuration names
// another one), nil when it is or names none.
func imageFor(img v1.Image, platform string) error {
	have, err := v1.ParsePlatform(configPlatform(img))
	want, werr := v1.ParsePlatform(platform)
	if err != nil || werr != nil || have.OS == "" || have.Satisfies(*want) {
		return nil
	}
	return fmt.Errorf("it holds a single-platform image for %s, not for %s", have, want)
}

// checkPlatform refuses a docker-save tarball whose image is not for
// platform (empty: any): this machine's Docker holds the platform it
// pulled, which need not be the hosts'.
func checkPlatform(file, ref, platform string) error {
	if platform == "" {
		return nil
	}
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return fmt.Errorf("platform %q: %w", platform, err)
	}
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if !got.Satisfies(*want) {
		return fmt.Errorf("this machine's Docker holds %s for %s, not for the hosts' %s; refusing to cache it for them. Make the registry reachable, or pull it here with docker pull --platform %s %s",
			ref, got.String(), want.String(), want.String(), ref)
	}
	return nil
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
