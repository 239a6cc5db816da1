package images

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// NeedsLogin asks ref's registry, from this machine and without any
// credentials, for ref's manifest (a HEAD, within timeout): true when the
// registry refuses an anonymous pull (401 or 403). Any other failure
// (unreachable, unknown) is returned as an error: it says nothing about
// logins.
func NeedsLogin(ctx context.Context, ref string, timeout time.Duration) (bool, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return false, err
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = remote.Head(r, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous))
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return true, nil
	}
	return false, err
}
