package lab

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A controller's Docker configuration holds the login as docker login
// leaves it without a helper, readable by its owner only.
func TestWriteDockerConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "docker")
	login := RegistryLogin{Registry: "172.31.0.1:5001", User: AuthRegistryUser, Password: "p4ss:word"}
	if err := WriteDockerConfig(dir, login); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.json")
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v %v, want mode 0600", fi.Mode(), err)
	}
	var c struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	dec, _ := base64.StdEncoding.DecodeString(c.Auths[login.Registry].Auth)
	if string(dec) != "cvs-lab:p4ss:word" {
		t.Errorf("auth for %s decodes to %q", login.Registry, dec)
	}
}
