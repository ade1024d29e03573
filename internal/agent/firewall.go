package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/agent/firewall"
	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/controller"
	"github.com/berth-dev/berth/internal/types"
)

// groupFirewall filters traffic to the node's groups; see package firewall.
type groupFirewall interface {
	Apply(ctx context.Context, st firewall.State) error
	Invalidate()
}

var _ groupFirewall = (*firewall.Firewall)(nil)

// placement is where a group's network lives: a virtual network subnet, or
// the public bridge (no Prefix), at the address the scheduler allocated
// for the whole cluster; nil for a public group without one (the node's
// own IPAM picks it).
func placement(g *types.ContainerGroup) *network.Placement {
	sn := g.Spec.Subnet
	if sn == nil {
		if g.IP == "" {
			return nil
		}
		return &network.Placement{IP: g.IP}
	}
	return &network.Placement{VirtualNetwork: sn.VirtualNetwork, Subnet: sn.Name, Prefix: sn.AddressPrefix, IP: g.IP}
}

// syncFirewall rebuilds the firewall from the desired groups and the
// attachments the network manager has on disk. It is level-triggered: it
// runs at start, after reconcile passes and on every resync, and always
// computes the whole table, so a missed event never leaves a stale rule.
func (a *Agent) syncFirewall(ctx context.Context) error {
	if a.opts.Firewall == nil {
		return nil
	}
	a.fwMu.Lock()
	defer a.fwMu.Unlock()
	groups := a.desired()
	public := a.opts.Network.Subnet()
	st := firewall.State{Managed: []netip.Prefix{public}}
	known := map[string]string{}
	for i := range groups {
		g := &groups[i]
		prefix := public
		if sn := g.Spec.Subnet; sn != nil {
			p, err := netip.ParsePrefix(sn.AddressPrefix)
			if err != nil {
				return fmt.Errorf("firewall: subnet of %s: %w", g.Key(), err)
			}
			prefix = p
			// Managed even before the group is attached: its subnet is
			// closed until its rules exist.
			st.Managed = append(st.Managed, p)
		}
		att, ok, err := a.opts.Network.Attached(g.UID)
		if err != nil {
			// Fail closed for this group only: without rules its address
			// is dropped as an unknown one of a managed prefix.
			a.log.Warn("firewall: read attachment", "group", g.Key(), "err", err)
			continue
		}
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(att.IP)
		if err != nil {
			return fmt.Errorf("firewall: address of %s: %w", g.Key(), err)
		}
		fg := firewall.Group{Name: g.Key(), UID: g.UID, Subscription: strings.ToLower(g.Subscription), IP: ip, Bridge: att.Bridge, Subnet: prefix, Kind: firewall.KindNone}
		switch {
		case g.Spec.Subnet != nil:
			fg.Kind, fg.VirtualNetwork = firewall.KindPrivate, g.Spec.Subnet.VirtualNetwork
		case g.Spec.IPAddress != nil && g.Spec.IPAddress.Type == "Public":
			fg.Kind = firewall.KindPublic
			for _, p := range g.Spec.IPAddress.Ports {
				fg.Ports = append(fg.Ports, firewall.Port{Protocol: strings.ToLower(p.Protocol), Port: uint16(p.Port)})
			}
		}
		st.Groups = append(st.Groups, fg)
		known[g.UID] = att.IP
	}
	if err := a.opts.Firewall.Apply(ctx, st); err != nil {
		return err
	}
	a.fwKnown = known
	return nil
}

// firewallCovers reports whether the last applied firewall has the rules of
// a group attached with ip.
func (a *Agent) firewallCovers(uid, ip string) bool {
	if a.opts.Firewall == nil {
		return true
	}
	a.fwMu.Lock()
	defer a.fwMu.Unlock()
	known, ok := a.fwKnown[uid]
	return ok && known == ip
}

// firewallKey is the firewall controller's only key: the whole table.
const firewallKey = "firewall"

// newFirewallController syncs the whole table on each request; requests
// that come while a sync runs are merged into the next one, and a failed
// sync is retried with back-off.
func (a *Agent) newFirewallController() *controller.Controller {
	sync := controller.ReconcileFunc(func(ctx context.Context, _ string) (controller.Result, error) {
		return controller.Result{}, a.syncFirewall(ctx)
	})
	return controller.New("firewall", sync, controller.Options{Logger: a.log,
		Backoff: controller.Backoff{Base: time.Second, Max: 30 * time.Second}})
}

// kickFirewall asks for a sync soon.
func (a *Agent) kickFirewall() { a.fwCtl.Enqueue(firewallKey) }

// runFirewall syncs on every kick until ctx ends.
func (a *Agent) runFirewall(ctx context.Context) { a.fwCtl.Run(ctx) }
