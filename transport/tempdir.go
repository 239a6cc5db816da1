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
	"slices"
	"sort"
	"strings"
	"sync"
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
	if !slices.Contains(TempPrefixes, prefix) {
		return "", fmt.Errorf("temporary folder prefix %q is not in TempPrefixes: a folder left by a kill would never be swept", prefix)
	}
	line := shell.Join("sh", "-c", tempScript, TempScriptName, TempDirName(prefix, forWhat...), prefix+".XXXXXXXXXX")
	res, err := r.Run(ctx, Command{Line: line, Name: "mktemp -d"})
	if err != nil {
		return "", err
	}
	dir := strings.TrimSpace(string(res.Stdout))
	if !path.IsAbs(dir) || path.Clean(dir) != dir || !strings.HasPrefix(path.Base(dir), prefix+".") || strings.ContainsAny(dir, "\n") {
		return "", fmt.Errorf("mktemp answered %q, not a fresh %s.* folder", dir, prefix)
	}
	made.add(hostName(r), dir)
	return dir, nil
}

// RemoveTempDir removes a folder made by MakeTempDir, also after ctx has
// ended: it may hold secrets.
func RemoveTempDir(ctx context.Context, r Runner, dir string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tempDirCleanup)
	defer cancel()
	_, err := r.Run(ctx, Command{Line: shell.Join("rm", "-rf", "--", dir)})
	if err == nil {
		made.remove(hostName(r), dir)
	}
	return err
}

// Named is a Runner that knows the name of the host it reaches.
type Named interface {
	HostName() string
}

func hostName(r Runner) string {
	if n, ok := r.(Named); ok {
		return n.HostName()
	}
	return "?"
}

// TempDirLeft is a temporary folder still on hosts.
type TempDirLeft struct {
	Dir   string
	Hosts []string // in the order the folders were made
}

// TempDirsLeft returns the folders MakeTempDir made in this process that
// RemoveTempDir has not removed, by path, each with the hosts holding it:
// what exiting now would leave behind. Safe to call from any goroutine (a
// signal handler's).
func TempDirsLeft() []TempDirLeft {
	made.mu.Lock()
	defer made.mu.Unlock()
	byDir := map[string]*TempDirLeft{}
	var out []*TempDirLeft
	for _, k := range made.order {
		t := byDir[k.dir]
		if t == nil {
			t = &TempDirLeft{Dir: k.dir}
			byDir[k.dir] = t
			out = append(out, t)
		}
		t.Hosts = append(t.Hosts, k.host)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	res := make([]TempDirLeft, len(out))
	for i, t := range out {
		res[i] = *t
	}
	return res
}

type hostDir struct{ host, dir string }

// made is this process's temporary folders on the hosts.
var made tempDirSet

type tempDirSet struct {
	mu    sync.Mutex
	order []hostDir
}

func (s *tempDirSet) add(host, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.order = append(s.order, hostDir{host, dir})
}

func (s *tempDirSet) remove(host, dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, k := range s.order {
		if k == (hostDir{host, dir}) {
			s.order = append(s.order[:i], s.order[i+1:]...)
			return
		}
	}
}

// TempPrefixes are the prefixes of cvs's temporary folders on hosts:
// MakeTempDir's (it refuses any other, so that SweepTempScript knows them
// all) and cvs-setup, the setup script's /tmp/cvs-setup.* (package
// provision).
var TempPrefixes = []string{"cvs-env", "cvs-stdin", "cvs-copy", "cvs-push", "cvs-setup"}

// StaleTempAge is how long a temporary folder must have been untouched
// (itself and everything in it) before SweepTempScript removes it.
//
// Not "made before this run": two cvs runs on different containers may
// share a host (the lock is per container), and the other run's folders
// are in use. A folder is needed only from its mkdir until the command
// that reads it has opened its files (docker run --env-file, docker load,
// a step's input, docker cp, the setup script once sourced), and every
// upload into it touches it; so a folder untouched for an hour belongs to
// a run that is gone (killed, or left by a second Ctrl-C).
const StaleTempAge = time.Hour

// SweepTempScript is a shell fragment that removes the temporary folders
// an earlier cvs left on the host: the TempPrefixes folders in $TMPDIR and
// /tmp that the SSH user owns, that are folders (not symlinks), and in
// which nothing, the folder included, changed for StaleTempAge. It prints
// each folder it removed, one a line. Where find is missing or fails on a
// folder, that folder stays.
func SweepTempScript() string {
	return sweepTempScript(StaleTempAge, `"${TMPDIR:-/tmp}" /tmp`)
}

func sweepTempScript(age time.Duration, dirs string) string {
	var globs []string
	for _, p := range TempPrefixes {
		globs = append(globs, `"$t"/`+p+`.*`)
	}
	return `for t in ` + dirs + `; do t=${t%/}; for d in ` + strings.Join(globs, " ") + `; do ` +
		`[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] || continue; ` +
		fmt.Sprintf(`r=$(find "$d" -mmin -%d 2>/dev/null) || continue; `, int(age/time.Minute)) +
		`[ -z "$r" ] || continue; rm -rf -- "$d" && printf '%s\n' "$d"; done; done`
}
