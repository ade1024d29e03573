package network

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containerd/errdefs"
)

// cniVersion is the spec version of the configs we write. Debian's plugins
// (1.1.1) accept 1.0.0, which is also the first version whose DEL gets the
// cached result (needed to undo ipMasq and port mappings).
const cniVersion = "1.0.0"

// Interface names inside the namespace.
const (
	ifLoopback = "lo"
	ifEth      = "eth0"
)

// Config file names under Dir/cni. They are written for people debugging a
// node; the manager itself uses the bytes it generated, and DEL uses the
// copy cached by libcni at ADD time.
const (
	confListFile = "berth.conflist"
	loopbackFile = "loopback.conf"
)

// gateway returns the first address of the subnet, which the bridge takes.
func gateway(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

// parseSubnet accepts an IPv4 CIDR with room for the gateway and at least one
// container.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("subnet %q: %w: %w", s, errdefs.ErrInvalidArgument, err)
	}
	if !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("subnet %q: want an IPv4 prefix of /30 or larger: %w", s, errdefs.ErrInvalidArgument)
	}
	return p.Masked(), nil
}

// confList renders the network list: a bridge that is the containers'
// gateway, with host-local IPAM whose state lives in ipamDir, followed by
// portmap for published ports. The bridge masquerades the containers'
// traffic when masq is set; on a cluster node the firewall's postrouting
// chain does it instead, for traffic that leaves every group network.
func confList(name, bridge string, subnet netip.Prefix, ipamDir string, masq bool) ([]byte, error) {
	return renderList(name, bridge, masq, hostLocalIPAM(subnet, ipamDir))
}

// staticConfList is confList for one group whose address is given: static
// IPAM, the subnet's first address as gateway. The scheduler allocates
// addresses for the whole cluster, so no node-local allocator may pick
// one.
func staticConfList(name, bridge string, subnet netip.Prefix, ip netip.Addr, masq bool) ([]byte, error) {
	type m = map[string]any
	return renderList(name, bridge, masq, m{
		"type": "static",
		"addresses": []m{{
			"address": netip.PrefixFrom(ip, subnet.Bits()).String(),
			"gateway": gateway(subnet).String(),
		}},
		"routes": []m{{"dst": "0.0.0.0/0"}},
	})
}

func hostLocalIPAM(subnet netip.Prefix, ipamDir string) map[string]any {
	type m = map[string]any
	return m{
		"type": "host-local",
		"ranges": [][]m{{{
			"subnet":  subnet.String(),
			"gateway": gateway(subnet).String(),
		}}},
		"routes":  []m{{"dst": "0.0.0.0/0"}},
		"dataDir": ipamDir,
	}
}

func renderList(name, bridge string, masq bool, ipam map[string]any) ([]byte, error) {
	type m = map[string]any
	conf := m{
		"cniVersion": cniVersion,
		"name":       name,
		"plugins": []m{
			{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      masq,
				"hairpinMode": true,
				"ipam":        ipam,
			},
			{
				"type":         "portmap",
				"capabilities": m{"portMappings": true},
				"snat":         true,
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// checkGroupIP accepts an address of subnet that a group may take: not the
// subnet's own address, its gateway or its broadcast address.
func checkGroupIP(s string, subnet netip.Prefix) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("group address %q: want an IPv4 address: %w", s, errdefs.ErrInvalidArgument)
	}
	if !subnet.Contains(ip) || ip == subnet.Addr() || ip == gateway(subnet) || ip == broadcast(subnet) {
		return netip.Addr{}, fmt.Errorf("group address %s: not a group address of %s: %w", ip, subnet, errdefs.ErrInvalidArgument)
	}
	return ip, nil
}

// broadcast is the last address of an IPv4 subnet.
func broadcast(subnet netip.Prefix) netip.Addr {
	a := subnet.Masked().Addr().As4()
	host := uint32(1)<<(32-subnet.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// loopbackConf renders the config that brings lo up in the namespace.
func loopbackConf(name string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion,
		"name":       name + "-loopback",
		"type":       "loopback",
	}, "", "  ")
}
