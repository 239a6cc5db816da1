package dockerapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/transport"
	"github.com/moby/moby/api/types/registry"
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

func TestFindLogin(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("alice:s3cret:with-colon"))
	for _, c := range []struct {
		name, config, reg string
		want              Login
		user, pass        string
	}{
		{"no config", "", "reg:5001", LoginNone, "", ""},
		{"auths by host:port", `{"auths":{"reg:5001":{"auth":"` + basic + `"}}}`, "reg:5001", LoginConfig, "alice", "s3cret:with-colon"},
		{"auths with a scheme", `{"auths":{"https://reg:5001/v2/":{"auth":"` + basic + `"}}}`, "reg:5001", LoginConfig, "alice", "s3cret:with-colon"},
		{"another registry's login", `{"auths":{"other:5001":{"auth":"` + basic + `"}}}`, "reg:5001", LoginNone, "", ""},
		{"Docker Hub's key", `{"auths":{"https://index.docker.io/v1/":{"auth":"` + basic + `"}}}`, "index.docker.io", LoginConfig, "alice", "s3cret:with-colon"},
		{"an empty entry (a helper's)", `{"auths":{"reg:5001":{}}}`, "reg:5001", LoginNone, "", ""},
		{"credsStore", `{"auths":{"reg:5001":{}},"credsStore":"pass"}`, "reg:5001", LoginHelper, "", ""},
		{"credHelpers for it", `{"credHelpers":{"reg:5001":"ecr-login"}}`, "reg:5001", LoginHelper, "", ""},
		{"credHelpers for another", `{"auths":{"reg:5001":{"auth":"` + basic + `"}},"credHelpers":{"other":"ecr-login"}}`, "reg:5001", LoginConfig, "alice", "s3cret:with-colon"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, got, err := findLogin([]byte(c.config), c.reg)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || a.Username != c.user || a.Password != c.pass {
				t.Errorf("findLogin = %q (%q, %q), want %q (%q, %q)", got, a.Username, a.Password, c.want, c.user, c.pass)
			}
		})
	}
	if _, _, err := findLogin([]byte("{not json"), "reg"); err == nil {
		t.Error("an unreadable configuration was taken for no login")
	}
}

// configHost answers the read of the SSH user's Docker configuration with
// config, and records the other commands.
type configHost struct {
	config string
	ran    []string
}

func (h *configHost) Run(_ context.Context, cmd transport.Command) (transport.Result, error) {
	if strings.Contains(cmd.Line, "config.json") {
		return transport.Result{Stdout: []byte(h.config)}, nil
	}
	h.ran = append(h.ran, cmd.Line)
	return transport.Result{}, nil
}

// authDaemon is a daemon that lacks every image and pulls only with
// want's credentials.
type authDaemon struct {
	want string // user:password
	mu   sync.Mutex
	got  []string
}

func (d *authDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if answerHandshake(w, r) {
		return
	}
	var a registry.AuthConfig
	if h := r.Header.Get(registry.AuthHeader); h != "" {
		b, _ := base64.URLEncoding.DecodeString(h)
		json.Unmarshal(b, &a)
	}
	d.mu.Lock()
	d.got = append(d.got, r.URL.Path+" "+a.Username+":"+a.Password)
	d.mu.Unlock()
	switch p := r.URL.Path; {
	case strings.Contains(p, "/images/") && strings.HasSuffix(p, "/json"):
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"message": "No such image"})
	case strings.HasSuffix(p, "/images/create"), strings.HasPrefix(p, "/v1.41/distribution/"):
		if a.Username+":"+a.Password != d.want {
			if strings.HasSuffix(p, "/images/create") {
				json.NewEncoder(w).Encode(map[string]any{"errorDetail": map[string]string{"message": "Head \"http://reg:5001/v2/w/manifests/1\": no basic auth credentials"}, "error": "no basic auth credentials"})
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"message": "Head \"http://reg:5001/v2/w/manifests/1\": no basic auth credentials"})
			return
		}
		if strings.HasSuffix(p, "/images/create") {
			json.NewEncoder(w).Encode(map[string]string{"status": "Downloaded newer image"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Descriptor": map[string]any{"digest": "sha256:" + strings.Repeat("b", 64)}})
	default:
		http.NotFound(w, r)
	}
}

// The API pull carries the host's login from the SSH user's Docker
// configuration, as the docker CLI sends it; the defect was a pull
// without it.
func TestPullSendsTheHostsLogin(t *testing.T) {
	d := &authDaemon{want: "alice:pw"}
	e := openFake(t, d)
	host := &configHost{config: `{"auths":{"reg:5001":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:pw")) + `"}}}`}
	e.WithCLI(docker.CLIEngine{CLI: docker.CLI{}, Host: host})
	if _, err := e.pull(context.Background(), "reg:5001/w:1", nil); err != nil {
		t.Fatalf("pull with the host's login: %v (daemon saw %q)", err, d.got)
	}
	if len(host.ran) != 0 {
		t.Errorf("the pull went through the CLI: %q", host.ran)
	}
	if err := e.CheckPull(context.Background(), "reg:5001/w:1"); err != nil {
		t.Errorf("CheckPull with the host's login: %v", err)
	}
}

// A host without a login is told so, naming the host, the registry and
// what to run; a host whose login is in a credential helper pulls with its
// docker CLI.
func TestPullWithoutOrWithHelperLogin(t *testing.T) {
	d := &authDaemon{want: "alice:pw"}
	e := openFake(t, d)
	host := &configHost{config: `{"auths":{}}`}
	e.WithCLI(docker.CLIEngine{CLI: docker.CLI{}, Host: host})
	for name, err := range map[string]error{"pull": func() error { _, err := e.pull(context.Background(), "reg:5001/w:1", nil); return err }(), "CheckPull": e.CheckPull(context.Background(), "reg:5001/w:1")} {
		if err == nil || !strings.Contains(err.Error(), "docker login reg:5001") || !strings.Contains(err.Error(), "host's SSH user") {
			t.Errorf("%s without a login: %v; want the host's SSH user and `docker login reg:5001`", name, err)
		}
	}
	host.config = `{"credsStore":"pass"}`
	if _, err := e.pull(context.Background(), "reg:5001/w:1", nil); err != nil {
		t.Fatal(err)
	}
	if len(host.ran) != 1 || !strings.Contains(host.ran[0], "docker pull") {
		t.Errorf("a helper's login did not pull with the host's CLI: %q", host.ran)
	}
}
