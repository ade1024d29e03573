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
// gateway and masquerades their traffic, with host-local IPAM whose state
// lives in ipamDir, followed by portmap for published ports.
func confList(name, bridge string, subnet netip.Prefix, ipamDir string) ([]byte, error) {
	type m = map[string]any
	conf := m{
		"cniVersion": cniVersion,
		"name":       name,
		"plugins": []m{
			{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": m{
					"type": "host-local",
					"ranges": [][]m{{{
						"subnet":  subnet.String(),
						"gateway": gateway(subnet).String(),
					}}},
					"routes":  []m{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
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

// loopbackConf renders the config that brings lo up in the namespace.
func loopbackConf(name string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion,
		"name":       name + "-loopback",
		"type":       "loopback",
	}, "", "  ")
}
