// Package fleet runs work on many hosts at once: one SSH connection per host
// for the whole invocation, at most max_parallel hosts at a time, one result
// per host. A failure on one host never hides another's.
package fleet

import (
	"context"
	"github.com/cvs-tool/cvs/fanout"
	"sync"
	"sync/atomic"

	"github.com/cvs-tool/cvs/cluster"
	"github.com/cvs-tool/cvs/transport"
)

// Dialer opens connections; *transport.Dialer implements it.
type Dialer interface {
	Dial(ctx context.Context, h cluster.Host) (*transport.Client, error)
}

// Fleet holds the connections of one invocation.
type Fleet struct {
	dial  DialFunc
	limit int

	// Progress, when set, is called after each host of an Each finishes,
	// with the number done so far and the total. Calls may come from several
	// goroutines, one at a time.
	Progress func(done, total int)

	mu    sync.Mutex
	conns map[string]*conn
}

type conn struct {
	mu     sync.Mutex
	dialed bool
	client transport.Conn
	err    error
}

// DialFunc opens a connection to one host.
type DialFunc func(ctx context.Context, h cluster.Host) (transport.Conn, error)

// New returns a Fleet that dials with d and works on at most limit hosts at
// once.
func New(d Dialer, limit int) *Fleet {
	return NewWithDial(func(ctx context.Context, h cluster.Host) (transport.Conn, error) {
		c, err := d.Dial(ctx, h)
		if c == nil {
			return nil, err // no typed nil inside the interface
		}
		return c, err
	}, limit)
}

// NewWithDial is New with a dial function (tests pass fake connections).
func NewWithDial(dial DialFunc, limit int) *Fleet {
	if limit < 1 {
		limit = 1
	}
	return &Fleet{dial: dial, limit: limit, conns: map[string]*conn{}}
}

// Client returns the connection to h, dialling it the first time. A failed
// dial is remembered: the host is not dialled again in this invocation. A
// connection that was lost (keep-alives unanswered, reset) is dialled again
// once asked for, so that cleanup reaches a host after a network blip.
func (f *Fleet) Client(ctx context.Context, h cluster.Host) (transport.Conn, error) {
	f.mu.Lock()
	c, ok := f.conns[h.Name]
	if !ok {
		c = &conn{}
		f.conns[h.Name] = c
	}
	f.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dialed || c.client != nil && !c.client.Alive() {
		c.dialed = true
		c.client, c.err = f.dial(ctx, h)
	}
	return c.client, c.err
}

// Func is the work done on one host; i is the host's index in the slice
// given to Each.
type Func func(ctx context.Context, i int, h cluster.Host, c transport.Conn) error

// Each connects to every host and runs fn on it, at most the Fleet's limit
// at a time, and returns one error per host (nil for success), in the order
// of hosts. A host whose connection fails gets the dial error and fn is not
// called for it.
func (f *Fleet) Each(ctx context.Context, hosts []cluster.Host, fn Func) []error {
	var progressMu sync.Mutex
	var done atomic.Int64
	return fanout.Run(ctx, len(hosts), f.limit, func(ctx context.Context, i int) error {
		var err error
		if c, derr := f.Client(ctx, hosts[i]); derr != nil {
			err = derr
		} else {
			err = fn(ctx, i, hosts[i], c)
		}
		n := int(done.Add(1))
		if f.Progress != nil {
			progressMu.Lock()
			f.Progress(n, len(hosts))
			progressMu.Unlock()
		}
		return err
	})
}

// Close closes every open connection.
func (f *Fleet) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		if c.client != nil {
			c.client.Close()
		}
	}
}
