package dockerapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cvs-tool/cvs/docker"
)

// platformDaemon is a Docker API holding one image of a platform ("":
// none); a pull takes the platform asked for (linux/amd64 when none is).
// It records the platform each pull and create was asked for.
type platformDaemon struct {
	mu      sync.Mutex
	holds   string // "os/arch" of the image held, "" none
	pulls   []string
	creates []string
}

func (d *platformDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if answerHandshake(w, r) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch p := r.URL.Path; {
	case strings.Contains(p, "/images/") && strings.HasSuffix(p, "/json"):
		if d.holds == "" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"message": "No such image: img:1"})
			return
		}
		os, arch, _ := strings.Cut(d.holds, "/")
		json.NewEncoder(w).Encode(map[string]any{"Id": "sha256:" + strings.Repeat("a", 64), "Os": os, "Architecture": arch})
	case strings.HasSuffix(p, "/images/create"):
		pl := r.URL.Query().Get("platform")
		d.pulls = append(d.pulls, pl)
		if pl == "" {
			pl = "linux/amd64"
		}
		d.holds = pl
		w.Write([]byte(`{"status":"pulled"}` + "\n"))
	case strings.HasSuffix(p, "/containers/create"):
		d.creates = append(d.creates, r.URL.Query().Get("platform"))
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"Id": "c0ffee"})
	case strings.HasSuffix(p, "/start"):
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// Issue 21 item 2: a run with a platform (the platform key) pulls that
// platform when the host holds the reference for another one or not at
// all, and creates the container for it, as docker run --platform does.
func TestRunWithAPlatformPullsAndCreatesIt(t *testing.T) {
	for _, c := range []struct {
		name, holds, platform string
		pulls                 []string
		create                string
	}{
		{name: "held for another platform", holds: "linux/amd64", platform: "linux/arm64", pulls: []string{"linux/arm64"}, create: "linux/arm64"},
		{name: "not held", platform: "linux/arm64", pulls: []string{"linux/arm64"}, create: "linux/arm64"},
		{name: "held for it", holds: "linux/arm64", platform: "linux/arm64", create: "linux/arm64"},
		{name: "no platform, not held", pulls: []string{""}},
		{name: "no platform, held", holds: "linux/arm64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &platformDaemon{holds: c.holds}
			e := openFake(t, d)
			if _, err := e.Run(context.Background(), docker.RunSpec{Name: "c", Image: "img:1", Platform: c.platform}); err != nil {
				t.Fatal(err)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if strings.Join(d.pulls, ",") != strings.Join(c.pulls, ",") || len(d.pulls) != len(c.pulls) {
				t.Errorf("pulls for platforms %q, want %q", d.pulls, c.pulls)
			}
			if len(d.creates) != 1 || d.creates[0] != c.create {
				t.Errorf("creates for platforms %q, want [%q]", d.creates, c.create)
			}
		})
	}
}
