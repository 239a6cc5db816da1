package images

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cvs-tool/cvs/report"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PlatformManifest is one platform of an image index: "os/arch[/variant]"
// and the digest of its image manifest.
type PlatformManifest struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
}

// HostArch is one host's architecture as the probe found it, by its OCI
// name (amd64, arm64, ...); "" when unknown.
type HostArch struct{ Host, Arch string }

// PlatformChoice is the platform the hosts launch.
type PlatformChoice struct {
	// Platform is "os/arch[/variant]"; "" when there is nothing to choose
	// (a single image) or each host takes its own from the index.
	Platform string
	// Manifest is Platform's manifest digest in the index ("" when the
	// image is not an index).
	Manifest string
}

// ChoosePlatform decides the platform the hosts launch from the forced
// one (the platform key, "" none), the hosts' architectures (unknown ones
// not counted) and the image index (nil: a single image, nothing to
// choose unless forced). Hosts of one architecture get its platform;
// hosts of several each take their own from the index, which must then
// hold them all. The error names the hosts of each architecture and the
// index's platforms.
func ChoosePlatform(forced string, hosts []HostArch, index []PlatformManifest) (PlatformChoice, error) {
	find := func(p string) (PlatformManifest, bool) {
		want, err := v1.ParsePlatform(p)
		if err != nil {
			return PlatformManifest{}, false
		}
		for _, pm := range index {
			if have, err := v1.ParsePlatform(pm.Platform); err == nil && have.Satisfies(*want) {
				return pm, true
			}
		}
		return PlatformManifest{}, false
	}
	has := func() string {
		var out []string
		for _, pm := range index {
			out = append(out, pm.Platform)
		}
		return strings.Join(out, ", ")
	}
	if forced != "" {
		if index == nil {
			return PlatformChoice{Platform: forced}, nil
		}
		pm, ok := find(forced)
		if !ok {
			return PlatformChoice{}, fmt.Errorf("platform = %q, but the image index holds only %s", forced, has())
		}
		return PlatformChoice{Platform: forced, Manifest: pm.Digest}, nil
	}
	if index == nil {
		return PlatformChoice{}, nil
	}
	byArch := map[string][]string{}
	for _, h := range hosts {
		if h.Arch != "" {
			byArch[h.Arch] = append(byArch[h.Arch], h.Host)
		}
	}
	archs := make([]string, 0, len(byArch))
	for a := range byArch {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	var missing []string
	for _, a := range archs {
		if _, ok := find("linux/" + a); !ok {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		var parts []string
		for _, a := range archs {
			parts = append(parts, fmt.Sprintf("%s (%s)", report.HostList(byArch[a]), a))
		}
		what := "the hosts need"
		if len(archs) > 1 {
			what = "the hosts need different platforms"
		}
		return PlatformChoice{}, fmt.Errorf("%s: %s; the image index holds only %s, nothing for %s. Push the image for those platforms, or set [container] platform to force one",
			what, strings.Join(parts, ", "), has(), strings.Join(missing, ", "))
	}
	if len(archs) != 1 {
		return PlatformChoice{}, nil
	}
	pm, _ := find("linux/" + archs[0])
	return PlatformChoice{Platform: "linux/" + archs[0], Manifest: pm.Digest}, nil
}
