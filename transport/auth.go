package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keyring holds the operator's signers: the ssh-agent's keys and the
// identity files, each file parsed once per invocation however many hosts
// use it. Private keys are only ever read here, never sent anywhere.
type keyring struct {
	agent     agent.ExtendedAgent // nil without SSH_AUTH_SOCK
	agentConn net.Conn

	mu    sync.Mutex
	files map[string]fileSigner
}

type fileSigner struct {
	signer ssh.Signer
	err    error
}

func newKeyring(agentSock string) (*keyring, error) {
	kr := &keyring{files: map[string]fileSigner{}}
	if agentSock != "" {
		conn, err := net.Dial("unix", agentSock)
		if err != nil {
			return nil, fmt.Errorf("ssh-agent at SSH_AUTH_SOCK=%s: %w (unset SSH_AUTH_SOCK to use key files only)", agentSock, err)
		}
		kr.agent, kr.agentConn = agent.NewClient(conn), conn
	}
	return kr, nil
}

func (kr *keyring) signer(path string) (ssh.Signer, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if fs, ok := kr.files[path]; ok {
		return fs.signer, fs.err
	}
	s, err := parseKeyFile(path)
	kr.files[path] = fileSigner{s, err}
	return s, err
}

func parseKeyFile(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("identity file %s is passphrase-protected; load it into ssh-agent (ssh-add %s) so cvs never asks for or stores the passphrase", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// methods returns the auth methods for a host and a description of what
// they offer (for the error when every one is refused). The host's
// identity files come first, then the agent's keys; with neither, the
// OpenSSH default files that exist are tried.
func (kr *keyring) methods(identityFiles []string, defaults []string) ([]ssh.AuthMethod, []string, error) {
	var signers []ssh.Signer
	var offered []string
	files := identityFiles
	explicit := len(files) > 0
	if !explicit && kr.agent == nil {
		for _, f := range defaults {
			if _, err := os.Stat(f); err == nil {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		s, err := kr.signer(f)
		if err != nil {
			// A key the cluster file names must be usable, unless the
			// agent may hold it (a passphrase-protected file).
			if explicit && kr.agent == nil {
				return nil, nil, err
			}
			continue
		}
		signers = append(signers, s)
		offered = append(offered, filepath.Clean(f))
	}
	// The keys the cluster file names go first: sshd stops listening after
	// MaxAuthTries keys, and an agent may hold many.
	if kr.agent != nil {
		ss, err := kr.agent.Signers()
		if err == nil {
			signers = append(signers, ss...)
			offered = append(offered, fmt.Sprintf("ssh-agent (%d keys)", len(ss)))
		}
	}
	if len(signers) == 0 {
		return nil, nil, errors.New("no key to offer: set identity_file in the cluster file, or start ssh-agent and ssh-add a key")
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, offered, nil
}

func (kr *keyring) close() {
	if kr.agentConn != nil {
		kr.agentConn.Close()
	}
}
