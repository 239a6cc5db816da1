package images

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A run holds the entry it obtained from the moment Obtain returns it
// until it lets it go (after docker load): a prune running meanwhile, in
// another goroutine, leaves it and says it is in use (issue 21 item 6).
// Both the cache-hit path and the fresh-fetch path are held.
func TestObtainHoldsTheEntryUntilReleased(t *testing.T) {
	reg := newRegistry(t, "", "")
	ref := reg.host + "/team/work:1"
	d := push(t, ref)
	c := &Cache{Dir: t.TempDir()}
	for _, path := range []string{"fetched", "cached"} {
		e, _, release, err := c.Obtain(context.Background(), ref, d.String(), ObtainOptions{})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var pruned PruneReport
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pruned, _ = c.Prune(time.Now().Add(time.Hour), 0)
		}()
		wg.Wait()
		if len(pruned.Removed) != 0 || len(pruned.InUse) != 1 || pruned.InUse[0].File != e.File {
			t.Errorf("%s: prune between obtain and load: %+v", path, pruned)
		}
		if _, err := ReadSaved(e.File); err != nil {
			t.Errorf("%s: the obtained tarball is gone before its load: %v", path, err)
		}
		release()
	}
	pruned, _ := c.Prune(time.Now().Add(time.Hour), 0)
	if len(pruned.Removed) != 1 || len(pruned.InUse) != 0 {
		t.Errorf("prune after release: %+v", pruned)
	}
}

// Partial files (a fetch or a docker save cut short, the sbcast copy of a
// killed run) are listed as partial with their size, and prune reclaims
// those nobody writes: not locked by a writer, untouched for a while
// (issue 21 item 7).
func TestPartialFilesListedAndReclaimed(t *testing.T) {
	dir, tmp := t.TempDir(), t.TempDir()
	c := &Cache{Dir: dir, TempDir: tmp}
	old := time.Now().Add(-2 * partialAge)
	write := func(p string, n int, mtime time.Time) string {
		if err := os.WriteFile(p, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
		return p
	}
	dead := []string{
		write(filepath.Join(dir, ".obtain.123.tar"), 1000, old),
		write(filepath.Join(dir, ".save.456.tar"), 2000, old),
		write(filepath.Join(tmp, "cvs-push-789.tar"), 3000, old),
	}
	fresh := write(filepath.Join(dir, ".obtain.999.tar"), 10, time.Now())
	// A writer that holds its partial file, however old its last write.
	held, err := NewPartial(dir, ".save.*.tar")
	if err != nil {
		t.Fatal(err)
	}
	os.Chtimes(held.Name(), old, old)
	write(filepath.Join(tmp, "unrelated.tar"), 10, old)

	if done, _ := c.List(); len(done) != 0 {
		t.Errorf("partial files listed as images: %+v", done)
	}
	all, err := c.Partials()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, e := range all {
		if !e.Partial {
			t.Errorf("a finished entry listed: %+v", e)
		}
		sizes[e.File] = e.Size
	}
	for _, p := range append(dead, fresh, held.Name()) {
		if _, ok := sizes[p]; !ok {
			t.Errorf("%s not listed as partial: %v", p, sizes)
		}
	}
	if sizes[dead[2]] != 3000 || len(sizes) != 5 {
		t.Errorf("partials listed: %v", sizes)
	}

	pruned, err := c.Prune(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reclaimed []string
	for _, e := range pruned.Partials {
		reclaimed = append(reclaimed, e.File)
	}
	if len(reclaimed) != len(dead) || len(pruned.Removed) != 0 {
		t.Errorf("reclaimed %v, want %v", reclaimed, dead)
	}
	for _, p := range dead {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s survives prune", p)
		}
	}
	for _, p := range []string{fresh, held.Name()} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s, being written, was removed", p)
		}
	}
	held.Close()
}
