package dockerapi

import (
	"errors"
	"testing"
)

// The daemon's answer to a pull from a registry that wants a login, when
// no credentials came with the request: the reported defect's message,
// which sent the API pull to its error instead of the host's docker CLI.
func TestIsAuthKnowsTheDaemonsAnswers(t *testing.T) {
	for _, msg := range []string{
		`Head "http://172.31.0.1:5001/v2/cvs-lab/workload/manifests/sha256:0f": no basic auth credentials`,
		`Error response from daemon: pull access denied for reg/x, repository does not exist or may require 'docker login'`,
		`unauthorized: authentication required`,
	} {
		if !isAuth(errors.New(msg)) {
			t.Errorf("isAuth(%q) = false", msg)
		}
	}
	for _, msg := range []string{
		`Get "http://172.31.0.1:5000/v2/": dial tcp 172.31.0.1:5000: connect: connection refused`,
		`manifest for reg/x:1 not found: manifest unknown`,
	} {
		if isAuth(errors.New(msg)) {
			t.Errorf("isAuth(%q) = true", msg)
		}
	}
}
