// Package images is cvs's image supply on the controller: resolving the
// configured tag to its manifest digest once per run, so that every host
// launches byte-identical content even when the tag is re-pushed while the
// run goes on.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/internal/atomicfile"
	"github.com/cvs-tool/cvs/internal/xdg"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Resolution is what a reference resolved to.
type Resolution struct {
	// Ref is the configured reference.
	Ref string `json:"ref"`
	// Digest is its manifest digest (sha256:...), "" when unresolved.
	Digest string `json:"digest,omitempty"`
	// Pinned is the reference the hosts launch: repo@digest when resolved,
	// else Ref.
	Pinned string `json:"pinned"`
	// Size is the total size of the image's layers as the registry stores
	// them (compressed; for linux/amd64 when the tag is a multi-platform
	// index), 0 when unknown: what a host must download.
	Size int64 `json:"size,omitempty"`
	// FromCache says the digest came from the on-disk cache, because the
	// registry could not be asked; Fallback says why.
	FromCache bool   `json:"from_cache,omitempty"`
	Fallback  string `json:"fallback,omitempty"`
	// Previous is the digest the cache held for the reference when the
	// registry now names another one ("" when unchanged or unknown): the
	// tag was re-pushed since.
	Previous string `json:"previous,omitempty"`
	// Index lists the platforms of a multi-platform image (Digest is then
	// the index's digest), nil for a single image.
	Index []PlatformManifest `json:"index,omitempty"`
	// Platform is the "os/arch[/variant]" a single image's configuration
	// names ("" for an index, or when the configuration names none).
	Platform string `json:"platform,omitempty"`
	// Err says why it could not be resolved (cached failures included).
	Err string `json:"error,omitempty"`
}

// Resolver resolves tags to digests through the registry API, with an
// on-disk cache shared by concurrent cvs processes.
type Resolver struct {
	// CacheDir holds one small file per reference; "" disables the cache.
	CacheDir string
	// TTL is how long a resolved digest may stand in for the registry's
	// answer when the registry cannot be asked (0: never).
	TTL time.Duration
	// FailTTL is how long a failed resolution is remembered, so that runs
	// on an air-gapped controller do not each wait for the timeout.
	FailTTL time.Duration
	// Timeout bounds one resolution.
	Timeout time.Duration
	// Keychain finds registry credentials; nil is authn.DefaultKeychain
	// (~/.docker/config.json and its credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil is the default.
	Transport http.RoundTripper
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// DefaultCacheDir is $XDG_CACHE_HOME/cvs/digests (~/.cache/cvs/digests).
func DefaultCacheDir() string {
	dir, _ := xdg.Cache("digests")
	return dir
}

type cacheEntry struct {
	// Ref is the normalised reference (docker.io/library/ubuntu:22.04
	// for ubuntu:22.04).
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Index lists the platforms when Digest is an image index's;
	// Platform is a single image's.
	Index    []PlatformManifest `json:"index,omitempty"`
	Platform string             `json:"platform,omitempty"`
	// Resolved is when the registry last named Digest.
	Resolved time.Time `json:"resolved_at"`
	// Err is the last failure to ask the registry, at Failed.
	Err    string    `json:"error,omitempty"`
	Failed time.Time `json:"failed_at,omitempty"`
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Resolve returns ref's manifest digest as the registry names it now (at
// most Timeout), so a tag re-pushed since the last run is seen at once
// (Previous names the digest the cache held). Only when the registry
// cannot answer does the cache answer, with a digest resolved less than
// TTL ago (FromCache, Fallback says why); a failure is remembered for
// FailTTL, during which the registry is not asked again. A reference that
// names a digest already is returned as it is. On failure the Resolution
// carries the error and Pinned is ref itself; the error is also returned.
func (r *Resolver) Resolve(ctx context.Context, ref string) (Resolution, error) {
	res := Resolution{Ref: ref, Pinned: ref}
	parsed, err := name.ParseReference(ref)
	if err != nil {
		res.Err = err.Error()
		return res, fmt.Errorf("image %q: %w", ref, err)
	}
	if d, ok := parsed.(name.Digest); ok {
		res.Digest = d.DigestStr()
		return res, nil
	}
	key := parsed.Name()
	prev, _ := r.load(key)
	var msg string
	if prev.Err != "" && r.fresh(prev.Failed, r.FailTTL) {
		msg = fmt.Sprintf("%s (remembered from %s ago)", prev.Err, r.now().Sub(prev.Failed).Round(time.Second))
	} else {
		// The descriptor's later requests (the image's configuration) use
		// the context it was fetched with: it ends once they are done.
		gctx, cancel := context.WithTimeout(ctx, r.timeout())
		desc, err := r.get(gctx, parsed)
		if err == nil {
			res.Digest, res.Pinned = desc.Digest.String(), pinned(parsed, desc.Digest.String())
			res.Size, res.Platform = imageFacts(desc)
			res.Index = platforms(desc)
		}
		cancel()
		if err == nil {
			if prev.Digest != "" && prev.Digest != res.Digest {
				res.Previous = prev.Digest
			}
			r.store(cacheEntry{Ref: key, Digest: res.Digest, Size: res.Size, Index: res.Index, Platform: res.Platform, Resolved: r.now()})
			return res, nil
		}
		var ae *AuthError
		if errors.As(err, &ae) {
			// Not remembered, nor answered from the cache: the registry
			// answered, and a docker login fixes it at once.
			res.Err = ae.Error()
			return res, ae
		}
		msg = err.Error()
		prev.Ref, prev.Err, prev.Failed = key, msg, r.now()
		r.store(prev)
	}
	if prev.Digest != "" && r.fresh(prev.Resolved, r.TTL) {
		res.FromCache = true
		res.Fallback = fmt.Sprintf("registry unreachable: %s; the digest it named %s ago (pin_ttl %s)", msg, r.now().Sub(prev.Resolved).Round(time.Second), r.TTL)
		res.Digest, res.Pinned, res.Size, res.Index, res.Platform = prev.Digest, pinned(parsed, prev.Digest), prev.Size, prev.Index, prev.Platform
		return res, nil
	}
	res.Err = msg
	return res, fmt.Errorf("resolving %s: %s", ref, msg)
}

// timeout bounds one resolution: Timeout, 10 s when unset.
func (r *Resolver) timeout() time.Duration {
	if r.Timeout <= 0 {
		return 10 * time.Second
	}
	return r.Timeout
}

// get asks the registry for ref's descriptor, within ctx (which bounds
// the descriptor's later requests too: Resolve gives it Timeout).
func (r *Resolver) get(ctx context.Context, ref name.Reference) (*remote.Descriptor, error) {
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("no answer from %s within %s (pin_timeout)", ref.Context().RegistryStr(), r.timeout())
	}
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return nil, &AuthError{Registry: ref.Context().RegistryStr(), Status: te.StatusCode, Err: err}
	}
	return desc, err
}

// AuthError is a registry that refused this machine's credentials, or
// wanted some it has none of.
type AuthError struct {
	Registry string
	Status   int // the HTTP status: 401 or 403
	Err      error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("registry %s refused this machine (%d %s): run `docker login %s` here (cvs reads the credentials of $DOCKER_CONFIG/config.json, else ~/.docker/config.json, and their credential helpers)", e.Registry, e.Status, http.StatusText(e.Status), e.Registry)
}

func (e *AuthError) Unwrap() error { return e.Err }

// imageFacts is the total compressed size of the layers of the image desc
// describes (its linux/amd64 image for an index; one more request), 0 when
// it cannot be told, and, for a single image, the platform its
// configuration names (one more request; "" when it names none).
func imageFacts(desc *remote.Descriptor) (size int64, platform string) {
	img, err := desc.Image()
	if err != nil {
		return 0, ""
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, ""
	}
	for _, l := range m.Layers {
		size += l.Size
	}
	if desc.MediaType.IsIndex() {
		return size, ""
	}
	return size, configPlatform(img)
}

// configPlatform is the "os/arch[/variant]" img's configuration names,
// "" when it names none or cannot be read.
func configPlatform(img v1.Image) string {
	cf, err := img.ConfigFile()
	if err != nil || cf.OS == "" || cf.Architecture == "" {
		return ""
	}
	return (&v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}).String()
}

// platforms lists the platforms of the index desc describes (nil when it
// is a single image), leaving out entries without a real platform (the
// attestation manifests some builders add as unknown/unknown).
func platforms(desc *remote.Descriptor) []PlatformManifest {
	if !desc.MediaType.IsIndex() {
		return nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil
	}
	out := []PlatformManifest{}
	for _, m := range im.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" || !m.MediaType.IsImage() {
			continue
		}
		out = append(out, PlatformManifest{Platform: m.Platform.String(), Digest: m.Digest.String()})
	}
	return out
}

// pinned is ref's repository at digest (the tag dropped: Docker refuses
// tag@digest in some versions and ignores the tag in the others).
func pinned(ref name.Reference, digest string) string {
	return ref.Context().Name() + "@" + digest
}

// file is the cache file of the normalised reference key.
func (r *Resolver) file(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(r.CacheDir, hex.EncodeToString(sum[:12])+".json")
}

// load returns the cache's entry for the normalised reference key, of
// any age.
func (r *Resolver) load(key string) (cacheEntry, bool) {
	if r.CacheDir == "" {
		return cacheEntry{}, false
	}
	data, err := os.ReadFile(r.file(key))
	if err != nil {
		return cacheEntry{}, false
	}
	var e cacheEntry
	if json.Unmarshal(data, &e) != nil || e.Ref != key {
		return cacheEntry{}, false
	}
	return e, true
}

// fresh says whether something that happened at t is less than ttl old.
func (r *Resolver) fresh(t time.Time, ttl time.Duration) bool {
	age := r.now().Sub(t)
	return !t.IsZero() && age >= 0 && age < ttl
}

// store writes e through a temporary file and a rename: concurrent cvs
// processes each see a whole entry (the last one wins).
func (r *Resolver) store(e cacheEntry) {
	if r.CacheDir == "" {
		return
	}
	if err := os.MkdirAll(r.CacheDir, 0o700); err != nil {
		return
	}
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	atomicfile.WriteBytes(r.file(e.Ref), data)
}

// Forget drops ref from the cache (a tag known to have moved).
func (r *Resolver) Forget(ref string) {
	if r.CacheDir == "" {
		return
	}
	if parsed, err := name.ParseReference(ref); err == nil {
		ref = parsed.Name()
	}
	os.Remove(r.file(ref))
}

// ShortDigest is a digest's first 12 hex digits, for tables.
func ShortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
