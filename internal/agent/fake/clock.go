// Package fake holds in-memory stand-ins for the node-local parts the
// agent drives (the container runtime, the group network) and for its
// control plane, so that the agent's decisions can be tested without
// root, containerd, CNI or cgroups. Tests control what the real parts do
// on their own: a container exits (with a code, or killed for memory), a
// pull or a network setup fails, an exec returns a code, time passes.
//
// The fakes satisfy the agent's unexported interfaces structurally; the
// agent's tests assert that at compile time.
package fake

import (
	"sync"
	"time"
)

// Clock is a manual clock: it stands still until Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
