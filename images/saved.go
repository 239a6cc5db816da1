package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Saved is an image in docker-save format (the format `docker save`
// writes and `docker load` reads) on this machine.
type Saved struct {
	Path string
	// RepoTags are the names docker load gives the image.
	RepoTags []string
	// ImageID is the image's ID as Docker computes it: the digest of its
	// configuration (sha256:...). docker load yields exactly this ID.
	ImageID string
	// ConfigFile and LayerFiles are the entries of the tarball, the layers
	// base first; DiffIDs are the layers' uncompressed digests.
	ConfigFile string
	LayerFiles []string
	DiffIDs    []string
	// Size is the tarball's size in bytes.
	Size int64
	// sizes of the layer entries, by name.
	layerSizes map[string]int64
}

type saveManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// ReadSaved reads the manifest and configuration of a docker-save tarball.
// The tarball holds exactly one image.
func ReadSaved(p string) (*Saved, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s := &Saved{Path: p, Size: st.Size(), layerSizes: map[string]int64{}}
	// First pass: the manifest (often at the end) and every entry's size;
	// tar skips file contents by seeking.
	var manifest []saveManifest
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		s.layerSizes[path.Clean(h.Name)] = h.Size
		if path.Clean(h.Name) == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return nil, fmt.Errorf("%s: manifest.json: %w", p, err)
			}
		}
	}
	if len(manifest) != 1 {
		return nil, fmt.Errorf("%s: a docker-save tarball of one image was expected (manifest.json lists %d)", p, len(manifest))
	}
	m := manifest[0]
	s.RepoTags, s.ConfigFile, s.LayerFiles = m.RepoTags, path.Clean(m.Config), m.Layers
	for i := range s.LayerFiles {
		s.LayerFiles[i] = path.Clean(s.LayerFiles[i])
	}
	// Second pass: the configuration, for the image ID and the diff IDs.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr = tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: the configuration %s named by manifest.json is missing", p, s.ConfigFile)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if path.Clean(h.Name) != s.ConfigFile {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		s.ImageID = "sha256:" + hex.EncodeToString(sum[:])
		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", p, s.ConfigFile, err)
		}
		s.DiffIDs = cfg.RootFS.DiffIDs
		break
	}
	if len(s.DiffIDs) != len(s.LayerFiles) {
		return nil, fmt.Errorf("%s: the configuration lists %d layers, the manifest %d", p, len(s.DiffIDs), len(s.LayerFiles))
	}
	return s, nil
}

// ChainIDs returns the chain ID of every layer of a stack (base first):
// what Docker's layer store calls a layer, since a layer is only the same
// on top of the same layers.
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// Missing returns the indexes of the layers a host lacks, given the chain
// IDs it holds.
func (s *Saved) Missing(have map[string]bool) []int {
	var out []int
	for i, c := range ChainIDs(s.DiffIDs) {
		if !have[c] {
			out = append(out, i)
		}
	}
	return out
}

// LayerBytes is the size of the given layers' entries in the tarball.
func (s *Saved) LayerBytes(layers []int) int64 {
	var n int64
	for _, i := range layers {
		n += s.layerSizes[s.LayerFiles[i]]
	}
	return n
}

// WriteDelta writes a docker-save tarball of the image to w that holds its
// manifest and configuration but only the layers listed in send (indexes,
// base first): docker load takes the others from the layer store of a
// host that already has them, and yields the same image ID. The entries
// are copied from the tarball as they are; nothing is recompressed.
func (s *Saved) WriteDelta(w io.Writer, send []int) error {
	want := map[string]bool{s.ConfigFile: true, "manifest.json": true, "repositories": true}
	for _, i := range send {
		want[s.LayerFiles[i]] = true
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.Path, err)
		}
		name := path.Clean(h.Name)
		if !want[name] && !isParentOf(name, want) {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
		written[name] = true
	}
	for name := range want {
		if !written[name] && name != "repositories" {
			return fmt.Errorf("%s: %s is missing from the tarball", s.Path, name)
		}
	}
	return tw.Close()
}

// isParentOf reports whether the folder entry name holds a wanted file
// (docker save writes folders for its layer directories).
func isParentOf(name string, want map[string]bool) bool {
	for w := range want {
		if strings.HasPrefix(w, name+"/") {
			return true
		}
	}
	return false
}
