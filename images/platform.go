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
	// (a single image, not forced) or each host takes its own from the
	// index.
	Platform string
	// Manifest is Platform's manifest digest in the index ("" when the
	// image is not an index).
	Manifest string
	// Hosts is each host's platform ("linux/ARCH") when the hosts are of
	// several architectures and each takes its own from the index (hosts
	// of unknown architecture are left out); nil otherwise.
	Hosts map[string]string
}

// ChoosePlatform decides the platform the hosts launch from the forced
// one (the platform key, "" none), the hosts' architectures (unknown ones
// not counted) and what the image offers: the platforms of its index, or,
// index nil, the platform a single image's configuration names (single,
// "" when unknown: nothing to check). Hosts of one architecture get its
// platform; hosts of several each take their own from the index, which
// must then hold them all. A single image must be for every host's
// architecture, or for the forced platform. The error names the hosts of
// each architecture, what the image offers and the platform key.
func ChoosePlatform(forced string, hosts []HostArch, index []PlatformManifest, single string) (PlatformChoice, error) {
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
	named := func(archs []string) string {
		var parts []string
		for _, a := range archs {
			parts = append(parts, fmt.Sprintf("%s (%s)", report.HostList(byArch[a]), a))
		}
		return strings.Join(parts, ", ")
	}
	if index == nil {
		return chooseSingle(forced, archs, single, named)
	}
	if forced != "" {
		pm, ok := find(forced)
		if !ok {
			return PlatformChoice{}, fmt.Errorf("[container] platform = %q, but the image index holds only %s", forced, has())
		}
		return PlatformChoice{Platform: forced, Manifest: pm.Digest}, nil
	}
	var missing []string
	for _, a := range archs {
		if _, ok := find("linux/" + a); !ok {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		what := "the hosts need"
		if len(archs) > 1 {
			what = "the hosts need different platforms"
		}
		return PlatformChoice{}, fmt.Errorf("%s: %s; the image index holds only %s, nothing for %s. Push the image for those platforms, or set [container] platform to force one",
			what, named(archs), has(), strings.Join(missing, ", "))
	}
	switch len(archs) {
	case 0:
		return PlatformChoice{}, nil
	case 1:
		pm, _ := find("linux/" + archs[0])
		return PlatformChoice{Platform: "linux/" + archs[0], Manifest: pm.Digest}, nil
	}
	each := map[string]string{}
	for _, h := range hosts {
		if h.Arch != "" {
			each[h.Host] = "linux/" + h.Arch
		}
	}
	return PlatformChoice{Hosts: each}, nil
}

// chooseSingle is ChoosePlatform for a single image (no index) whose
// configuration names platform single ("": unknown, nothing to check).
func chooseSingle(forced string, archs []string, single string, named func([]string) string) (PlatformChoice, error) {
	have, err := v1.ParsePlatform(single)
	if single == "" || err != nil {
		return PlatformChoice{Platform: forced}, nil
	}
	if forced != "" {
		want, err := v1.ParsePlatform(forced)
		if err == nil && !have.Satisfies(*want) {
			hosts := ""
			if len(archs) > 0 {
				hosts = ", for the hosts " + named(archs)
			}
			return PlatformChoice{}, fmt.Errorf("[container] platform = %q%s, but the image is a single-platform image for %s (no image index): it has no %s. Push an image (or an image index) for %s, or remove the platform key",
				forced, hosts, have, forced, forced)
		}
		return PlatformChoice{Platform: forced}, nil
	}
	var wrong []string
	for _, a := range archs {
		if !have.Satisfies(v1.Platform{OS: "linux", Architecture: a}) {
			wrong = append(wrong, a)
		}
	}
	if len(wrong) > 0 {
		return PlatformChoice{}, fmt.Errorf("the image is a single-platform image for %s (no image index), and the hosts %s are not. Push an image (or an image index) for %s, or, if those hosts emulate %s, set [container] platform = %q",
			have, named(wrong), strings.Join(wrong, ", "), have.Architecture, have.String())
	}
	return PlatformChoice{}, nil
}
