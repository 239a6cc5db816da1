package cluster

import "time"

// The defaults of every cluster-file key that has one. They live here and
// nowhere else: the loader fills them in, `cvs validate` prints them, and the
// README's key reference is checked against them by a test.
const (
	DefaultPort           = 22
	DefaultHostKeyCheck   = HostKeyStrict
	DefaultConnectTimeout = 10 * time.Second
	DefaultCommandTimeout = 10 * time.Minute
	DefaultKeepAlive      = 15 * time.Second
	DefaultMaxParallel    = 64
	DefaultMaxClockSkew   = time.Minute
	// DefaultDockerSocket is where Docker listens on a host.
	DefaultDockerSocket = "/var/run/docker.sock"
	DefaultLifetime     = LifetimePerRun
	DefaultPullTimeout  = 900 * time.Second
	DefaultPin          = PinPrefer
	DefaultPinTTL       = time.Hour
	DefaultPinTimeout   = 10 * time.Second
	DefaultSSHDPort     = 2224
	DefaultStepTimeout  = 60 * time.Minute
	DefaultStepOn       = OnAll

	// MaxSetupScriptBytes bounds a setup script: it travels inline, base64
	// encoded, in one docker exec command line.
	MaxSetupScriptBytes = 16 << 10

	// MaxStepScriptBytes bounds a step's run script: steps are for
	// calling tools, not for carrying them (put large scripts in the image
	// or install them in the overlay).
	MaxStepScriptBytes = 64 << 10

	// UserPlaceholder expands to the effective user in every string value.
	UserPlaceholder = "{user-id}"
)

// DefaultKnownHosts is the known_hosts file used when the cluster file names
// none; "~" is the operator's home directory.
const DefaultKnownHosts = "~/.ssh/known_hosts"

// DefaultIdentityFiles are tried, when they exist, if neither the cluster
// file nor ~/.ssh/config names an identity and no agent is running. They are
// the files OpenSSH itself tries.
var DefaultIdentityFiles = []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}
