// Package provision runs a container's setup script inside a freshly
// launched container: the operator's script, or the packaged default that
// installs an OpenSSH server.
//
// The script travels inline, base64 encoded, as one argument of a `docker
// exec` command line. That is the one deliberate exception to cvs's rule
// that bulk data never rides in a command line: it needs no file transfer
// and no writable path on the host, and MaxScriptBytes keeps the line well
// under the kernel's 128 KiB limit for one argument.
package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cvs-tool/cvs/report"

	"github.com/cvs-tool/cvs/assets"
	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/docker"
	"github.com/cvs-tool/cvs/shell"
	"github.com/cvs-tool/cvs/transport"
)

// MaxScriptBytes is the largest setup script cvs ships: the limit of the
// inline channel, the same one the cluster-file loader enforces.
const MaxScriptBytes = cluster.MaxSetupScriptBytes

// Script returns the setup script at path, or the packaged default
// (assets/setup_openssh.sh) when path is empty. A script over
// MaxScriptBytes is an error naming its size: the loader refuses it
// already, and this guard keeps a file that grew since then off the wire.
func Script(path string) ([]byte, error) {
	if path == "" {
		return bytes.Clone(assets.SetupOpenSSH), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("setup script: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit, so that the size check does not trust
	// a Stat taken before the read.
	data, err := io.ReadAll(io.LimitReader(f, MaxScriptBytes+1))
	if err != nil {
		return nil, fmt.Errorf("setup script %s: %w", path, err)
	}
	if len(data) > MaxScriptBytes {
		size := int64(len(data))
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		return nil, fmt.Errorf("setup script %s is %d bytes, over the %d-byte (16 KiB) limit of the inline channel; move the bulk into the image or fetch it from the script", path, size, MaxScriptBytes)
	}
	return data, nil
}

// outer runs first, under the container's sh: it checks that bash exists,
// so that an image without bash fails with a sentence rather than with
// the OCI runtime's "executable file not found". $1 is the bash program
// below; $2.. its arguments.
const outer = `if ! command -v bash >/dev/null 2>&1; then ` +
	`echo "cvs setup: bash is not installed in the container; the setup script runs under bash: add bash to the image" >&2; exit 127; fi; ` +
	`exec bash -c "$1" "$0" "$2" "$3" "$4" "$5"`

// decodeAndRun decodes the script ($1, base64) into a file in a fresh
// private folder of the container and runs that file under bash with
// errexit and pipefail, stdin closed: a command of the script that reads
// stdin cannot swallow the rest of it, and the script text is in no
// process's arguments while it runs. On success it writes the
// provisioning record ($4) with the script's hash ($2) and cvs's version
// ($3). The folder is removed however the script ends.
const decodeAndRun = `set -uo pipefail; ` +
	`if ! command -v base64 >/dev/null 2>&1; then ` +
	`echo "cvs setup: base64 is not installed in the container (coreutils or busybox); it is needed to decode the setup script" >&2; exit 127; fi; ` +
	`d=$(mktemp -d /tmp/cvs-setup.XXXXXXXX) || exit 1; trap 'rm -rf "$d"' EXIT; ` +
	`printf '%s' "$1" | base64 -d >"$d/cvs-setup" || { echo "cvs setup: the setup script could not be decoded" >&2; exit 1; }; ` +
	`rc=0; bash -eo pipefail -c 'f=$1; shift; . "$f"' "$0" "$d/cvs-setup" </dev/null || rc=$?; ` +
	`[ "$rc" -eq 0 ] || exit "$rc"; ` +
	`mkdir -p "$(dirname "$4")" && printf 'sha256=%s\ncvs=%s\ntime=%s\n' "$2" "$3" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$4"`

// scriptName is $0 of the setup script, the name bash uses in its own
// error messages ("cvs-setup: line 3: foo: command not found").
const scriptName = "cvs-setup"

// RecordPath is where a container keeps its provisioning record: the
// setup script's hash, the cvs version and the time, written when the
// script succeeded. A variable so that tests running the command on this
// machine write elsewhere.
var RecordPath = docker.ProvisionRecord

// Hash is a setup script's identity in records and labels.
func Hash(script []byte) string {
	sum := sha256.Sum256(script)
	return hex.EncodeToString(sum[:])
}

// Command returns the remote command line that runs script inside
// container as root, with the docker commands of d, and records it with
// version when it succeeds. The script runs under bash with errexit and
// pipefail (`set -eo pipefail`; it may relax them itself); the line's exit
// status is the script's. A container without sh, bash or base64 fails
// with a message saying which is missing.
func Command(d docker.CLI, container string, script []byte, version string) (string, error) {
	argv, err := Argv(container, script, version)
	if err != nil {
		return "", err
	}
	// -u 0: the script installs packages, whatever USER the image names.
	// Watched: when cvs stops it (time limit, Ctrl-C, cvs killed and its
	// SSH session gone), the script is killed in the container too, so no
	// provisioning goes on (and records itself) after cvs gave up on it.
	return d.ExecWatched(container, docker.Root, shell.Join(argv...)), nil
}

// Argv is the command that runs script in a container (see Command).
func Argv(container string, script []byte, version string) ([]string, error) {
	if container == "" || strings.HasPrefix(container, "-") {
		return nil, fmt.Errorf("provision: invalid container name %q", container)
	}
	if len(script) > MaxScriptBytes {
		return nil, fmt.Errorf("setup script is %d bytes, over the %d-byte (16 KiB) limit of the inline channel", len(script), MaxScriptBytes)
	}
	b64 := base64.StdEncoding.EncodeToString(script)
	if version == "" {
		version = "unknown"
	}
	return []string{"sh", "-c", outer, scriptName, decodeAndRun, b64, Hash(script), version, RecordPath}, nil
}

// Run runs script inside container on host through e (as root, watched:
// see Command) and returns what it printed. A failure is an *Error naming the host and carrying the tail of
// the script's output, stdout and stderr together in the order they came;
// like transport's errors it keeps the host as a field, out of its text.
func Run(ctx context.Context, e docker.Engine, host string, container string, script []byte, version string) (transport.Result, error) {
	argv, err := Argv(container, script, version)
	if err != nil {
		return transport.Result{ExitCode: -1}, &Error{Host: host, Container: container, Code: -1, Err: err}
	}
	// stdout and stderr together in the order they came; only the tail is
	// kept, whatever an install prints.
	out := report.NewTailBuffer(64 << 10)
	res, err := e.Exec(ctx, container, docker.Root, argv, docker.ExecIO{Watched: true, Stdout: out, Stderr: out, Name: "setup script"})
	if err != nil {
		return res, &Error{Host: host, Container: container, Code: res.ExitCode, Output: report.Tail(out.String(), tailLines), Err: err}
	}
	return res, nil
}

// tailLines is how much of a failed script's output an Error carries:
// enough for apt's last complaint, not a whole install log.
const tailLines = 30

// Error is a setup script that could not be run, or failed, in one
// container.
type Error struct {
	Host      string
	Container string
	// Code is the script's exit status; -1 when it was killed, never
	// ended or never ran (see Err).
	Code int
	// Output is the last lines of the script's output, stdout and stderr
	// interleaved.
	Output string
	// Err is the cause: a *transport.ExitError, a *transport.TimeoutError,
	// a connection error, or a refused script.
	Err error
}

func (e *Error) Error() string {
	what := transport.Outcome(e.Err)
	var ee *transport.ExitError
	if errors.As(e.Err, &ee) && ee.Signal == "" {
		what = "failed with " + what
	}
	msg := fmt.Sprintf("setup script in container %s: %s", e.Container, what)
	if e.Output != "" {
		msg += "\n" + report.Indent(e.Output, "  | ")
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }
