package images

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// The tag resolves to its manifest digest and the repository at that
// digest; a reference with a digest is its own pin, no registry asked.
// (That a run keeps its digest while the tag moves is the session's:
// it resolves once, see session's TestPinning.)
func TestResolvePins(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	first := push(t, ref)
	r := newResolver(t)
	res, err := r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != first.String() || res.Pinned != reg.host+"/team/work@"+first.String() {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	hits := reg.hits.Load()
	res, err = r.Resolve(context.Background(), res.Pinned)
	if err != nil || res.Digest != first.String() || reg.hits.Load() != hits {
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
	start = time.Now()
	res, err = r.Resolve(context.Background(), ref)
	if err == nil || res.FromCache || !strings.Contains(err.Error(), "remembered") || time.Since(start) > 200*time.Millisecond {
		t.Errorf("second try (%s): %+v %v", time.Since(start), res, err)
	}
}

// Resolving reads the manifest too: the size of the image's layers (what a
// host must download) comes with the digest, and from the cache when the
// registry is down.
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
	rd := &redirect{host: reg.host}
	r := newResolver(t)
	r.Transport = rd
	for _, from := range []string{"registry", "cache"} {
		rd.down.Store(from == "cache")
		res, err := r.Resolve(context.Background(), ref)
		if err != nil || res.Size != want || res.FromCache != (from == "cache") {
			t.Errorf("from the %s: size %d, want %d (%+v, %v)", from, res.Size, want, res, err)
		}
	}
}

// redirect sends every registry request, whatever its host, to the test
// registry (so docker.io references resolve there); down makes it fail as
// an unreachable registry does.
type redirect struct {
	host string
	down atomic.Bool
}

func (rd *redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	if rd.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = "http", rd.host, rd.host
	return http.DefaultTransport.RoundTrip(r)
}

// Issue 21 item 1: every resolution asks the registry, so a tag re-pushed
// since the last run is seen at once (and the change is reported with
// both digests); the cache only answers when the registry cannot, within
// the TTL, and says why.
func TestRePushSeenAtOnceCacheOnlyAFallback(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	first := push(t, ref)
	rd := &redirect{host: reg.host}
	clock := time.Now()
	r := newResolver(t)
	r.Transport, r.Now = rd, func() time.Time { return clock }

	if res, err := r.Resolve(context.Background(), ref); err != nil || res.Digest != first.String() || res.FromCache || res.Previous != "" {
		t.Fatalf("first: %+v %v", res, err)
	}
	second := push(t, ref)
	res, err := r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != second.String() || res.FromCache || res.Previous != first.String() {
		t.Errorf("after a re-push: %+v %v (want %s, previous %s)", res, err, second, first)
	}
	res, err = r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != second.String() || res.Previous != "" {
		t.Errorf("unchanged: %+v %v", res, err)
	}

	rd.down.Store(true)
	clock = clock.Add(30 * time.Minute)
	res, err = r.Resolve(context.Background(), ref)
	if err != nil || res.Digest != second.String() || !res.FromCache || !strings.Contains(res.Fallback, "registry unreachable") {
		t.Errorf("registry down, within the TTL: %+v %v", res, err)
	}
	clock = clock.Add(31 * time.Minute) // the digest is now older than the TTL
	if res, err := r.Resolve(context.Background(), ref); err == nil || res.Digest != "" {
		t.Errorf("registry down, past the TTL: %+v %v", res, err)
	}

	// pin_ttl = 0: never a fallback.
	rd.down.Store(false)
	r0 := newResolver(t)
	r0.Transport, r0.TTL = rd, 0
	if _, err := r0.Resolve(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	rd.down.Store(true)
	if res, err := r0.Resolve(context.Background(), ref); err == nil || res.FromCache {
		t.Errorf("TTL 0, registry down: %+v %v", res, err)
	}
}

// The cache is keyed by the normalised reference: ubuntu:22.04 and
// docker.io/library/ubuntu:22.04 are one entry.
func TestCacheKeyIsTheNormalisedReference(t *testing.T) {
	reg := newRegistry(t, "", "")
	d := push(t, reg.host+"/library/ubuntu:22.04")
	rd := &redirect{host: reg.host}
	r := newResolver(t)
	r.Transport = rd
	if res, err := r.Resolve(context.Background(), "ubuntu:22.04"); err != nil || res.Digest != d.String() {
		t.Fatalf("ubuntu:22.04: %+v %v", res, err)
	}
	rd.down.Store(true)
	for _, ref := range []string{"docker.io/library/ubuntu:22.04", "index.docker.io/library/ubuntu:22.04", "ubuntu:22.04"} {
		if res, err := r.Resolve(context.Background(), ref); err != nil || res.Digest != d.String() || !res.FromCache {
			t.Errorf("%s from the cache: %+v %v", ref, res, err)
		}
	}
	if n, _ := os.ReadDir(r.CacheDir); len(n) != 1 {
		t.Errorf("%d cache files, want 1", len(n))
	}
}

// Two cvs processes resolving at once: every reader sees a whole entry,
// and no temporary file is left.
func TestConcurrentWritersLeaveWholeEntries(t *testing.T) {
	dir := t.TempDir()
	ref := "reg.example:5000/team/work:1"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := &Resolver{CacheDir: dir, TTL: time.Hour}
			for i := 0; i < 100; i++ {
				r.store(cacheEntry{Ref: ref, Digest: fmt.Sprintf("sha256:%064d", w*1000+i), Resolved: time.Now()})
			}
		}(w)
	}
	var bad atomic.Int64
	var rg sync.WaitGroup
	for k := 0; k < 4; k++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			r := &Resolver{CacheDir: dir, TTL: time.Hour}
			for {
				select {
				case <-stop:
					return
				default:
				}
				data, err := os.ReadFile(r.file(ref))
				if err != nil {
					continue
				}
				var e cacheEntry
				if json.Unmarshal(data, &e) != nil || len(e.Digest) != 71 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d reads saw a partial entry", bad.Load())
	}
	if all, _ := os.ReadDir(dir); len(all) != 1 {
		t.Errorf("files left: %v", all)
	}
}

// A registry that refuses this machine's credentials (or wants some) is
// an answer, not an outage: the error names the registry and the docker
// login to run, the cache does not answer instead, and the failure is not
// remembered, so the run after the login pins at once.
func TestRefusedCredentialsSayDockerLoginNotTheCache(t *testing.T) {
	reg := newRegistry(t, "ci-bot", "hunter2-s3cret")
	ref := reg.host + "/private/work:1"
	push(t, ref, remote.WithAuth(&authn.Basic{Username: "ci-bot", Password: "hunter2-s3cret"}))
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	login := func(pass string) {
		cfg := `{"auths": {"` + reg.host + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("ci-bot:"+pass)) + `"}}}`
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600)
	}
	r := newResolver(t)
	login("hunter2-s3cret")
	if _, err := r.Resolve(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	login("wrong")
	res, err := r.Resolve(context.Background(), ref)
	var ae *AuthError
	if !errors.As(err, &ae) || res.FromCache || !strings.Contains(err.Error(), "docker login "+reg.host) {
		t.Fatalf("refused credentials: %+v %v; want an AuthError saying `docker login %s`, not the cache", res, err, reg.host)
	}
	login("hunter2-s3cret")
	if _, err := r.Resolve(context.Background(), ref); err != nil {
		t.Errorf("after the login: %v (the refusal was remembered)", err)
	}
}
