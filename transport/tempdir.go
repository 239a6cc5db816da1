package transport

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/cvs-tool/cvs/shell"
)

// tempDirCleanup bounds the removal of a temporary folder, which runs even
// after the caller's context has ended.
const tempDirCleanup = 30 * time.Second

// MakeTempDir creates a fresh private folder (mode 0700, mktemp's) on the
// host for files on their way into a container, named prefix.XXXXXXXXXX.
// The answer is checked before anyone may rm -rf it.
func MakeTempDir(ctx context.Context, r Runner, prefix string) (string, error) {
	res, err := r.Run(ctx, Command{Line: shell.Join("mktemp", "-d", "-t", prefix+".XXXXXXXXXX")})
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
