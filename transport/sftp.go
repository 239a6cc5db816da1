package transport

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// Upload streams r to remotePath on the host over SFTP (a channel of the
// existing connection, no new handshake), creating it with mode before any
// byte is written; the parent folder must exist. Bulk data (multi-GB image
// tarballs) and secrets travel this way, never in a command line, and never
// whole in memory.
func (c *Client) Upload(ctx context.Context, remotePath string, r io.Reader, mode os.FileMode) error {
	// Concurrent writes: many packets in flight, as the SSH channel's window
	// allows, instead of one write waiting for the last one's answer.
	sc, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true))
	if err != nil {
		return &HostError{Host: c.Host.Name, Kind: KindSSH, Err: err, Detail: fmt.Sprintf("starting SFTP (is the sftp subsystem enabled in sshd?): %v", err)}
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	f, err := sc.OpenFile(remotePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("creating %s: %w", remotePath, err)
	}
	// Restrict the mode before any byte is written.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", remotePath, err)
	}
	if _, err := f.ReadFromWithConcurrency(r, 0); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", remotePath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", remotePath, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}
