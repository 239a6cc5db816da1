package transport

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/shell"
)

// tempDirCleanup bounds the removal of a temporary folder, which runs even
// after the caller's context has ended.
const tempDirCleanup = 30 * time.Second

// tempKey makes this process's temporary folder names unguessable.
var tempKey = func() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}()

// TempDirName is the name MakeTempDir tries first for prefix and for: the
// same on every host for the same arguments in this process, unguessable
// by anyone else.
func TempDirName(prefix string, forWhat ...[]byte) string {
	h := hmac.New(sha256.New, tempKey)
	for _, b := range append([][]byte{[]byte(prefix)}, forWhat...) {
		binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
	}
	return prefix + "." + hex.EncodeToString(h.Sum(nil))[:16]
}

// tempScript makes the folder $1 in $TMPDIR, or else one from the mktemp
// template $2, and prints its path.
const tempScript = `d="${TMPDIR:-/tmp}"; d="${d%/}/$1"; if mkdir -m 700 -- "$d" 2>/dev/null; then printf '%s\n' "$d"; else mktemp -d -t "$2"; fi`

// TempScriptName is $0 of MakeTempDir's command line: sh -c SCRIPT
// TempScriptName NAME TEMPLATE (fakes of a host look for it).
const TempScriptName = "cvs-mktemp"

// MakeTempDir creates a fresh private folder (mode 0700) on the host for
// files on their way into a container, in $TMPDIR (or /tmp), named
// TempDirName(prefix, forWhat...): the same folder on every host for the
// same files, so that the commands that follow are the same line on every
// host and, through Slurm, run as one srun. mkdir fails on any name that
// exists (a symlink too); then mktemp -d picks a random one. The answer is
// checked before anyone may rm -rf it.
func MakeTempDir(ctx context.Context, r Runner, prefix string, forWhat ...[]byte) (string, error) {
	line := shell.Join("sh", "-c", tempScript, TempScriptName, TempDirName(prefix, forWhat...), prefix+".XXXXXXXXXX")
	res, err := r.Run(ctx, Command{Line: line, Name: "mktemp -d"})
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(string(res.Stdout))
	if !path.IsAbs(dir) || path.Clean(dir) != dir || !strings.HasPrefix(path.Base(dir), prefix+".") || strings.ContainsAny(dir, "\n") {
		return "", fmt.Errorf("mktemp answered %q, not a fresh %s.* folder", dir, prefix)
	}
	return dir, nil
}

// RemoveTempDir removes a folder made by MakeTempDir, also after ctx has
// ended: it may hold secrets.
func RemoveTempDir(ctx context.Context, r Runner, dir string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tempDirCleanup)
	defer cancel()
	_, err := r.Run(ctx, Command{Line: shell.Join("rm", "-rf", "--", dir)})
	return err
}
