package lab

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
)

// Defaults, in one place. Each can be overridden through Config or the
// environment (see ConfigFromEnv).
const (
	// DefaultDir holds the lab's state. /var/tmp survives reboots, so the
	// image cache does too, and it is on a real filesystem (not tmpfs), which
	// the hosts' inner overlay2 storage needs.
	DefaultDir = "/var/tmp/cvs-lab"
	// DefaultSubnet is a private /24 unlikely to collide with Docker's own
	// 172.17-172.20 defaults or with common LANs.
	DefaultSubnet = "172.29.0.0/24"
	// DefaultSuite is the Debian release the lab images are built from.
	DefaultSuite = "bookworm"
	// DefaultHosts is the lab size used by cvs-lab up and the e2e tests.
	DefaultHosts = 3
	// MaxHosts bounds a lab: each host costs about 100 MiB of memory (inner
	// dockerd and containerd) and one address of the subnet.
	MaxHosts = 64
)

// Environment variables read by ConfigFromEnv.
const (
	EnvDir    = "CVS_LAB_DIR"
	EnvSubnet = "CVS_LAB_SUBNET"
	EnvSuite  = "CVS_LAB_SUITE"
	EnvMirror = "CVS_LAB_MIRROR"
	EnvSeed   = "CVS_LAB_SEED"
)

// Config describes where a lab lives and how its images are built. The zero
// value is valid: every empty field takes its default.
type Config struct {
	// Dir holds everything the lab creates: the outer daemon's sockets and
	// data, PID files, keys, the cluster file and the image caches.
	// Default DefaultDir.
	Dir string
	// Subnet is the lab bridge network. The gateway (first address) is the
	// machine's side of the bridge, where the registry listens; host i gets
	// the 10+i'th address (172.29.0.11, 172.29.0.12, ... by default).
	Subnet netip.Prefix
	// Suite is the Debian release the images are built from.
	Suite string
	// Mirror is the Debian mirror debootstrap and apt use while building
	// images; empty means debootstrap's own default.
	Mirror string
	// Seed is another lab's folder whose built images this lab may take
	// instead of building its own (docker save from that lab's daemon,
	// while it runs; its apt repository and root filesystem copied): the
	// labs that scripts/e2e.sh runs side by side build the images once.
	// Empty: build what is missing.
	Seed string
	// Log receives progress lines and per-phase timings. Nil discards them.
	Log io.Writer
}

// ConfigFromEnv returns a Config from CVS_LAB_DIR, CVS_LAB_SUBNET,
// CVS_LAB_SUITE and CVS_LAB_MIRROR, logging to stderr. Unset variables leave
// the defaults in place.
func ConfigFromEnv() (Config, error) {
	c := Config{
		Dir:    os.Getenv(EnvDir),
		Suite:  os.Getenv(EnvSuite),
		Mirror: os.Getenv(EnvMirror),
		Seed:   os.Getenv(EnvSeed),
		Log:    os.Stderr,
	}
	if s := os.Getenv(EnvSubnet); s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Config{}, fmt.Errorf("%s=%q: %w", EnvSubnet, s, err)
		}
		c.Subnet = p
	}
	return c, nil
}

// withDefaults fills empty fields and checks the result.
func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return Config{}, fmt.Errorf("lab dir %q: %w", c.Dir, err)
	}
	c.Dir = abs
	if !c.Subnet.IsValid() {
		c.Subnet = netip.MustParsePrefix(DefaultSubnet)
	}
	c.Subnet = c.Subnet.Masked()
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() > 24 {
		return Config{}, fmt.Errorf("lab subnet %s: need an IPv4 network of /24 or larger (set %s)", c.Subnet, EnvSubnet)
	}
	if c.Suite == "" {
		c.Suite = DefaultSuite
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	// The outer dockerd's containerd puts sockets under the exec root, and
	// a unix socket path is limited to 108 bytes.
	if n := len(filepath.Join(c.Dir, "run", "exec", "containerd", "containerd-debug.sock")); n > 100 {
		return Config{}, errors.New("lab dir " + c.Dir + " is too long for the daemon's unix sockets; choose a shorter " + EnvDir)
	}
	return c, nil
}
