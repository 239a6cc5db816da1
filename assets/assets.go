// Package assets holds files that ship inside the cvs binary.
package assets

import _ "embed"

// SetupOpenSSH is the default container setup script: it installs an
// OpenSSH server with the image's package manager unless one is present.
//
//go:embed setup_openssh.sh
var SetupOpenSSH []byte
