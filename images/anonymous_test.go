package images

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestNeedsLogin(t *testing.T) {
	open, closed := newRegistry(t, "", ""), newRegistry(t, "ci-bot", "hunter2")
	push(t, open.host+"/w:1")
	push(t, closed.host+"/w:1", remote.WithAuth(&authn.Basic{Username: "ci-bot", Password: "hunter2"}))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if need, err := NeedsLogin(context.Background(), open.host+"/w:1", 5*time.Second); need || err != nil {
		t.Errorf("open registry: %v %v", need, err)
	}
	if need, err := NeedsLogin(context.Background(), closed.host+"/w:1", 5*time.Second); !need || err != nil {
		t.Errorf("registry with a login: %v %v", need, err)
	}
}
