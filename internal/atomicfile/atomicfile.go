// Package atomicfile writes a file all at once: a reader (another cvs, a
// CI job, a browser) sees the old file or the new one, never half of one,
// and a write that fails leaves the old one. The new file is 0600 (it may
// hold a key, a record with host names, a report).
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with what write produces, through a temporary file
// in path's folder, synced before it is renamed over path.
func Write(path string, write func(io.Writer) error) error {
	return commit(path, write, os.Rename)
}

// WriteBytes is Write of data.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error { _, err := w.Write(data); return err })
}

// Create is Write that never replaces: when path exists already it is
// left as it is and Create returns an error that matches fs.ErrExist.
// Two processes creating path at once: one wins, whole.
func Create(path string, write func(io.Writer) error) error {
	return commit(path, write, func(tmp, path string) error {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		return err
	})
}

func commit(path string, write func(io.Writer) error, place func(tmp, path string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	if err := write(w); err != nil {
		tmp.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return place(tmp.Name(), path)
}
