package images

import (
	"context"
	"encoding/base64"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry is go-containerregistry's in-memory registry, optionally
// behind basic auth; hits counts requests.
type testRegistry struct {
	host string
	hits atomic.Int64
}

func newRegistry(t *testing.T, user, pass string) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.hits.Add(1)
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

// push puts a random image at ref and returns its manifest digest.
func push(t *testing.T, ref string, opts ...remote.Option) v1.Hash {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func newResolver(t *testing.T) *Resolver {
	return &Resolver{CacheDir: t.TempDir(), TTL: time.Hour, FailTTL: time.Minute, Timeout: 5 * time.Second}
}

// The tag resolves once; a re-push of the tag after that does not change
// what this run launches (the cache answers), and a new resolution after
// the TTL sees the new digest.
func TestResolvePinsAndCaches(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	first := push(t, ref)
	clock := time.Now()
	r := newResolver(t)
	r.Now = func() time.Time { return clock }

	res, err := r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != first.String() || res.Pinned != reg.host+"/team/work@"+first.String() {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	second := push(t, ref) // re-pushed between resolve and launch
	hits := reg.hits.Load()
	res, err = r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != first.String() || !res.FromCache || reg.hits.Load() != hits {
		t.Errorf("within the TTL: %+v %v (registry asked %d more times)", res, err, reg.hits.Load()-hits)
	}
	clock = clock.Add(2 * time.Hour)
	res, err = r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != second.String() || res.FromCache {
		t.Errorf("after the TTL: %+v %v", res, err)
	}
	// A reference with a digest is its own pin, no registry asked.
	hits = reg.hits.Load()
	res, err = r.Resolve(context.Background(), res.Pinned)
	if err != nil || res.Digest != second.String() || reg.hits.Load() != hits {
		t.Errorf("digest reference: %+v %v", res, err)
	}
}

// Credentials come from the Docker config (the default keychain), and go
// only to the registry, never into the resolution.
func TestResolveWithBasicAuthFromDockerConfig(t *testing.T) {
	reg := newRegistry(t, "ci-bot", "hunter2-s3cret")
	ref := reg.host + "/private/work:1"
	d := push(t, ref, remote.WithAuth(&authn.Basic{Username: "ci-bot", Password: "hunter2-s3cret"}))

	r := newResolver(t)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := r.Resolve(context.Background(), ref); err == nil {
		t.Fatal("resolved without credentials")
	}
	r.Forget(ref)
	cfg := `{"auths": {"` + reg.host + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("ci-bot:hunter2-s3cret")) + `"}}}`
	os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(cfg), 0o600)
	res, err := r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != d.String() {
		t.Fatalf("with credentials: %+v %v", res, err)
	}
	entries, _ := os.ReadDir(r.CacheDir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(r.CacheDir, e.Name()))
		if strings.Contains(string(b), "hunter2") {
			t.Errorf("the cache holds the password: %s", b)
		}
	}
}

// An unreachable registry costs at most Timeout, and the failure is
// remembered for FailTTL so the next runs do not wait again.
func TestUnreachableRegistryIsBoundedAndRemembered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ref := ln.Addr().String() + "/team/work:1"
	r := newResolver(t)
	r.Timeout = 300 * time.Millisecond
	start := time.Now()
	res, err := r.Resolve(context.Background(), ref)
	if err == nil || res.Pinned != ref || !strings.Contains(res.Err, "pin_timeout") {
		t.Fatalf("unreachable: %+v %v", res, err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s with a 300ms timeout", time.Since(start))
	}
	res, err = r.Resolve(context.Background(), ref)
	if err == nil || !res.FromCache || !strings.Contains(err.Error(), "remembered") {
		t.Errorf("second try: %+v %v", res, err)
	}
}

// Resolving reads the manifest too: the size of the image's layers (what a
// host must download) comes with the digest, and from the cache after.
func TestResolveKnowsTheLayerSize(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/big:1"
	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	rr, _ := name.ParseReference(ref)
	if err := remote.Write(rr, img); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	var want int64
	for _, l := range m.Layers {
		want += l.Size
	}
	r := newResolver(t)
	for _, from := range []string{"registry", "cache"} {
		res, err := r.Resolve(context.Background(), ref)
		if err != nil || res.Size != want || res.FromCache != (from == "cache") {
			t.Errorf("from the %s: size %d, want %d (%+v, %v)", from, res.Size, want, res, err)
		}
	}
}
