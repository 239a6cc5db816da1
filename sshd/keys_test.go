package sshd

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "cvs", "clusters", "abc")
	k1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for _, name := range []string{clientKeyFile, hostKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", name, st.Mode().Perm(), err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("folder holds %d entries; want the 2 key files and no leftovers", len(entries))
	}
	for _, k := range []ssh.PublicKey{k1.ClientKey(), k1.HostKey()} {
		if k.Type() != ssh.KeyAlgoED25519 {
			t.Errorf("key type %s; want ed25519", k.Type())
		}
	}
	if bytes.Equal(k1.ClientKey().Marshal(), k1.HostKey().Marshal()) {
		t.Error("the client key and the host key are the same key")
	}

	k2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(k1, k2) {
		t.Error("a second LoadOrCreate returned other keys")
	}
}

func sameKeys(a, b Keys) bool {
	return bytes.Equal(a.ClientKey().Marshal(), b.ClientKey().Marshal()) &&
		bytes.Equal(a.HostKey().Marshal(), b.HostKey().Marshal()) &&
		bytes.Equal(a.clientPEM, b.clientPEM) && bytes.Equal(a.hostPEM, b.hostPEM)
}

func TestLoadOrCreateConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]Keys, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = LoadOrCreate(dir)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !sameKeys(keys[0], keys[i]) {
			t.Errorf("caller %d got other keys than caller 0", i)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("folder holds %d entries; want 2", len(entries))
	}
}

func TestLoadOrCreateTightensTheFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	os.Mkdir(dir, 0o755)
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %04o; want 0700", st.Mode().Perm())
	}
}

func TestLoadOrCreateRefuses(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaBlock, _ := ssh.MarshalPrivateKey(rsaKey, "")
	for _, tc := range []struct {
		name    string
		prepare func(dir string)
		want    string
	}{
		{"readable by others", func(dir string) {
			LoadOrCreate(dir)
			os.Chmod(filepath.Join(dir, clientKeyFile), 0o644)
		}, "readable by others"},
		{"corrupt", func(dir string) {
			os.WriteFile(filepath.Join(dir, hostKeyFile), []byte("not a key\n"), 0o600)
		}, hostKeyFile},
		{"not ed25519", func(dir string) {
			os.WriteFile(filepath.Join(dir, clientKeyFile), pem.EncodeToMemory(rsaBlock), 0o600)
		}, "not the ed25519 key"},
		{"a folder in the way", func(dir string) {
			os.Mkdir(filepath.Join(dir, clientKeyFile), 0o700)
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(dir)
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, tc := range []struct {
		xdg, want string
	}{
		{"", filepath.Join(home, ".local", "state", "cvs", "clusters")},
		{"relative/state", filepath.Join(home, ".local", "state", "cvs", "clusters")},
		{"/var/lib/me", "/var/lib/me/cvs/clusters"},
	} {
		t.Setenv("XDG_STATE_HOME", tc.xdg)
		d, err := Dir("/etc/cvs/cluster.toml")
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(d) != tc.want || len(filepath.Base(d)) != 16 {
			t.Errorf("XDG_STATE_HOME=%q: Dir = %s; want %s/<16 hex>", tc.xdg, d, tc.want)
		}
	}
	t.Setenv("XDG_STATE_HOME", "")
	a, _ := Dir("/etc/cvs/a.toml")
	b, _ := Dir("/etc/cvs/b.toml")
	a2, _ := Dir("/etc/cvs/../cvs/a.toml")
	if a == b {
		t.Error("two cluster files share a key folder")
	}
	if a != a2 {
		t.Error("the same cluster file spelled two ways got two key folders")
	}
	t.Chdir("/etc")
	rel, _ := Dir("cvs/a.toml")
	if rel != a {
		t.Error("a relative cluster-file path is not made absolute")
	}
}

func TestKeyLines(t *testing.T) {
	k := keysForTest(t)
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedKey()))
	if err != nil || !bytes.Equal(pub.Marshal(), k.ClientKey().Marshal()) || comment != "cvs-cluster" {
		t.Errorf("AuthorizedKey %q: %v", k.AuthorizedKey(), err)
	}
	for _, tc := range []struct {
		port    int
		pattern string
	}{{2224, "[*]:2224"}, {22, "*"}} {
		line := k.KnownHostsLine(tc.port)
		_, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
		if err != nil || len(hosts) != 1 || hosts[0] != tc.pattern || !bytes.Equal(key.Marshal(), k.HostKey().Marshal()) {
			t.Errorf("KnownHostsLine(%d) = %q (%v); want %s and the host key", tc.port, line, err, tc.pattern)
		}
	}
	var zero Keys
	if zero.AuthorizedKey() != "" || zero.KnownHostsLine(22) != "" || zero.ClientKey() != nil || zero.HostKey() != nil {
		t.Error("the zero Keys claims to hold keys")
	}
}

// Logging a Keys, however it is formatted, never shows key material.
func TestKeysNeverPrintSecrets(t *testing.T) {
	k := keysForTest(t)
	type holder struct{ keys Keys } // unexported: fmt cannot call String
	type exported struct{ Keys Keys }
	var printed []string
	for _, v := range []any{k, &k, holder{k}, exported{k}, []Keys{k}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
	}
	secrets := secretFragments(t, k)
	for _, p := range printed {
		for _, s := range secrets {
			if strings.Contains(p, s) || strings.Contains(p, fmt.Sprintf("%x", k.clientPEM[40:60])) {
				t.Errorf("printed key material: %.120s", p)
			}
		}
	}
	if s := k.String(); !strings.Contains(s, "SHA256:") || !strings.Contains(s, k.Dir) {
		t.Errorf("String() = %q; want the folder and fingerprints", s)
	}
	if s := (Keys{}).String(); s != "no cluster keys" {
		t.Errorf("zero String() = %q", s)
	}
}
