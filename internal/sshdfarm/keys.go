package sshdfarm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/ssh"
)

// keyGenerators maps the key types Options.HostKeyTypes accepts to their
// generators. RSA keys are 2048 bits: enough for loopback tests and
// several times faster to generate than OpenSSH's 3072-bit default.
var keyGenerators = map[string]func() (crypto.Signer, error){
	"ed25519": func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	},
	"rsa": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
	"ecdsa": func() (crypto.Signer, error) {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	},
}

// key is a generated key pair in the forms the farm writes.
type key struct {
	private    []byte // OpenSSH private key file contents, unencrypted
	authorized string // "ssh-ed25519 AAAA..." without comment or newline
	signer     ssh.Signer
}

func generateKey(typ, comment string) (key, error) {
	gen, ok := keyGenerators[typ]
	if !ok {
		return key{}, fmt.Errorf("sshdfarm: unknown key type %q", typ)
	}
	priv, err := gen()
	if err != nil {
		return key{}, fmt.Errorf("generate %s key: %w", typ, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return key{}, fmt.Errorf("encode %s key: %w", typ, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return key{}, fmt.Errorf("%s key signer: %w", typ, err)
	}
	return key{
		private:    pem.EncodeToMemory(block),
		authorized: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
		signer:     signer,
	}, nil
}

// workers is how many hosts are prepared at once: key generation is
// CPU-bound.
func workers() int { return runtime.GOMAXPROCS(0) }
