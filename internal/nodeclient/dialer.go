package nodeclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// Dialer finds the node services of a node by name: the local node's in
// process, any other's over its node server at Node.Endpoint.
type Dialer struct {
	local    string
	localSvc nodeapi.Service
	lookup   func(ctx context.Context, node string) (types.Node, error)
	tls      *tls.Config

	mu      sync.Mutex
	clients map[string]*Client // by node name
}

// NewDialer returns a Dialer. local names the node whose service is
// localSvc (the server's own agent); "" or a nil localSvc means none.
// lookup reads a node (the store, or a cache of it); tlsConf is what
// New takes.
func NewDialer(local string, localSvc nodeapi.Service, lookup func(ctx context.Context, node string) (types.Node, error), tlsConf *tls.Config) *Dialer {
	return &Dialer{local: local, localSvc: localSvc, lookup: lookup, tls: tlsConf, clients: map[string]*Client{}}
}

// Service returns the services of the named node. A node that is not
// registered or has no node server is errdefs.ErrUnavailable: its groups
// cannot be reached, though they exist.
func (d *Dialer) Service(ctx context.Context, node string) (nodeapi.Service, error) {
	if node == "" {
		return nil, fmt.Errorf("the container group is not placed on a node: %w", errdefs.ErrFailedPrecondition)
	}
	if node == d.local && d.localSvc != nil {
		return d.localSvc, nil
	}
	n, err := d.lookup(ctx, node)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("node '%s' is not registered: %w", node, errdefs.ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("look up node '%s': %w", node, err)
	}
	if n.Endpoint == "" {
		return nil, fmt.Errorf("node '%s' has no node server endpoint: %w", node, errdefs.ErrUnavailable)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.clients[node]
	if c == nil || c.endpoint != strings.TrimSuffix(n.Endpoint, "/") {
		if c != nil {
			c.Close() // the node moved; its old address is of no use
		}
		c = New(n.Endpoint, d.tls)
		c.node = "'" + node + "' (" + n.Endpoint + ")"
		d.clients[node] = c
	}
	return c, nil
}
