//go:build !linux

package sshdfarm

import "syscall"

// sysProcAttr puts each sshd in its own process group, so a terminal's
// Ctrl-C reaches the test binary (which stops the farm) rather than the
// sshds directly.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// childrenOf is only implemented on Linux; elsewhere sessions still open
// at Stop end when their client disconnects.
func childrenOf([]int) []int { return nil }
