package fake

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/berth-dev/berth/internal/agent/network"
)

// PublicSubnet is the public bridge's subnet of a Network.
var PublicSubnet = netip.MustParsePrefix("10.88.0.0/16")

// Network attaches groups as network.Manager does, in memory: one
// attachment per id with an address from the public subnet or the
// placement's, kept until Teardown. It is safe for concurrent use.
type Network struct {
	// OnList, when set, runs each time List has taken its listing (outside
	// the lock): a test's hook to change the world between two listings.
	OnList func()

	mu       sync.Mutex
	atts     map[string]network.Attachment
	next     map[netip.Prefix]netip.Addr
	setupErr error
	tornDown []string
}

// NewNetwork returns a network without attachments.
func NewNetwork() *Network {
	return &Network{atts: map[string]network.Attachment{}, next: map[netip.Prefix]netip.Addr{}}
}

// FailSetup makes every SetupIn of a new attachment fail with err; nil
// lets them succeed again.
func (n *Network) FailSetup(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setupErr = err
}

// Attach adds an attachment as one left by an earlier agent.
func (n *Network) Attach(id string, att network.Attachment) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.atts[id] = att
}

// TornDown returns the ids Teardown detached, in order.
func (n *Network) TornDown() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.tornDown)
}

// SetupIn attaches id in the placement's subnet (the public one for nil
// or no Prefix), at the placement's IP when it has one, or returns its
// attachment when it has one.
func (n *Network) SetupIn(_ context.Context, id string, p *network.Placement) (network.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if att, ok := n.atts[id]; ok {
		return att, nil
	}
	if n.setupErr != nil {
		return network.Attachment{}, fmt.Errorf("set up network of %s: %w", id, n.setupErr)
	}
	prefix, bridge := PublicSubnet, "fake0"
	if p != nil && p.Prefix != "" {
		var err error
		if prefix, err = netip.ParsePrefix(p.Prefix); err != nil {
			return network.Attachment{}, fmt.Errorf("subnet %s: %w", p.Subnet, err)
		}
		bridge = "fakev-" + p.Subnet
	}
	gw := prefix.Masked().Addr().Next()
	var ip netip.Addr
	if p != nil && p.IP != "" {
		var err error
		if ip, err = netip.ParseAddr(p.IP); err != nil || !prefix.Contains(ip) {
			return network.Attachment{}, fmt.Errorf("address %q is not one of %s", p.IP, prefix)
		}
	} else {
		var ok bool
		if ip, ok = n.next[prefix]; !ok {
			ip = gw.Next()
		}
		if !prefix.Contains(ip) {
			return network.Attachment{}, fmt.Errorf("subnet %s is full", prefix)
		}
		n.next[prefix] = ip.Next()
	}
	att := network.Attachment{NetNSPath: "/run/fake/netns/" + id, IP: ip.String(), Gateway: gw.String(), Bridge: bridge}
	n.atts[id] = att
	return att, nil
}

// Attached returns the attachment of id.
func (n *Network) Attached(id string) (network.Attachment, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	att, ok := n.atts[id]
	return att, ok, nil
}

// Teardown detaches id; a missing attachment counts as detached.
func (n *Network) Teardown(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.atts[id]; ok {
		delete(n.atts, id)
		n.tornDown = append(n.tornDown, id)
	}
	return nil
}

// List returns the attached ids, sorted.
func (n *Network) List() ([]string, error) {
	n.mu.Lock()
	ids := slices.Sorted(maps.Keys(n.atts))
	n.mu.Unlock()
	if n.OnList != nil {
		n.OnList()
	}
	return ids, nil
}

// Subnet is PublicSubnet.
func (n *Network) Subnet() netip.Prefix { return PublicSubnet }
