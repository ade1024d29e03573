package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// Placement is where a group goes on the node's networks: a virtual
// network subnet, or the public bridge when Prefix is empty; and at which
// address. Each subnet gets its own bridge: the subnet is the bridge's
// subnet, its first address the gateway.
type Placement struct {
	// VirtualNetwork identifies the network (its store key).
	VirtualNetwork string
	// Subnet is the subnet's name.
	Subnet string
	// Prefix is the subnet's IPv4 CIDR; empty for the public bridge.
	Prefix string
	// IP is the group's address, allocated for the whole cluster (the
	// scheduler's); the group gets it through static IPAM. Empty lets the
	// node's host-local IPAM pick one (a single node, or a group bound
	// before addresses were allocated cluster-wide).
	IP string
}

// bridgeNet is one CNI bridge network: the public one or a subnet's.
type bridgeNet struct {
	name   string // CNI network name: names cache entries and the IPAM dir
	bridge string
	subnet netip.Prefix
	masq   bool
	bytes  []byte
	list   *libcni.NetworkConfigList
}

func newBridgeNet(name, bridge string, subnet netip.Prefix, ipamDir string, masq bool) (*bridgeNet, error) {
	b, err := confList(name, bridge, subnet, ipamDir, masq)
	if err != nil {
		return nil, fmt.Errorf("render conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse conflist: %w", err)
	}
	return &bridgeNet{name: name, bridge: bridge, subnet: subnet, masq: masq, bytes: b, list: list}, nil
}

// staticList is the network's list for one group at ip. It has the
// network's name, so the CNI cache keys it as the host-local list, and the
// DEL of a group reads back whichever list its ADD used.
func (n *bridgeNet) staticList(ip netip.Addr) (*libcni.NetworkConfigList, error) {
	b, err := staticConfList(n.name, n.bridge, n.subnet, ip, n.masq)
	if err != nil {
		return nil, fmt.Errorf("render conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse conflist: %w", err)
	}
	return list, nil
}

// SubnetBridge names the bridge of a virtual network subnet on the node
// whose public bridge is publicBridge: "bv" and 12 hex digits of a hash of
// it and the placement's network, subnet and prefix (not its address: a
// bridge holds many groups), so that it fits the 15-byte limit, differs
// between servers sharing a host, and changes when the subnet's prefix
// does (a stale bridge of an old prefix is never reused).
func SubnetBridge(publicBridge string, p Placement) string {
	h := sha256.Sum256([]byte(strings.Join([]string{publicBridge, p.VirtualNetwork, strings.ToLower(p.Subnet), p.Prefix}, "\x00")))
	return "bv" + hex.EncodeToString(h[:6])
}

// subnetNet returns the bridge network of a placement.
func (m *Manager) subnetNet(p *Placement) (*bridgeNet, error) {
	prefix, err := parseSubnet(p.Prefix)
	if err != nil {
		return nil, err
	}
	if prefix.Overlaps(m.def.subnet) {
		return nil, fmt.Errorf("subnet %s overlaps the public subnet %s: %w", prefix, m.def.subnet, errdefs.ErrInvalidArgument)
	}
	bridge := SubnetBridge(m.def.bridge, *p)
	return newBridgeNet("berth-"+bridge, bridge, prefix, m.ipamDir(), m.masq)
}

// writeNetConf records a subnet network in use under Dir/cni/nets, for
// people, for collectNets and for cleanup tools. The caller holds the
// network's lock.
func (m *Manager) writeNetConf(n *bridgeNet) error {
	if n == m.def {
		return nil
	}
	return writeFileAtomic(filepath.Join(m.netsDir(), n.name+".conflist"), n.bytes)
}

func (m *Manager) recordDir() string { return filepath.Join(m.dir, "cni", "attachments") }
func (m *Manager) netsDir() string   { return filepath.Join(m.dir, "cni", "nets") }

// record is what Dir/cni/attachments/<id> holds: the network id is (being)
// attached to, so that teardown works after a restart.
type record struct {
	Name   string `json:"name"`
	Bridge string `json:"bridge"`
	Subnet string `json:"subnet"`
}

func (m *Manager) writeRecord(id string, n *bridgeNet) error {
	b, err := json.Marshal(record{Name: n.name, Bridge: n.bridge, Subnet: n.subnet.String()})
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(m.recordDir(), id), b)
}

func (m *Manager) removeRecord(id string) error {
	if err := os.Remove(filepath.Join(m.recordDir(), id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove attachment record of %s: %w", id, err)
	}
	return nil
}

func (m *Manager) readRecord(id string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(m.recordDir(), id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attachment record of %s: %w", id, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse attachment record of %s: %w", id, err)
	}
	return &r, nil
}

// recordedNet is the network id is attached to: the public one when there
// is no record.
func (m *Manager) recordedNet(id string) (*bridgeNet, error) {
	r, err := m.readRecord(id)
	if err != nil || r == nil || r.Name == m.def.name {
		return m.def, err
	}
	prefix, err := netip.ParsePrefix(r.Subnet)
	if err != nil {
		return nil, fmt.Errorf("attachment record of %s: subnet %q: %w", id, r.Subnet, err)
	}
	return newBridgeNet(r.Name, r.Bridge, prefix, m.ipamDir(), m.masq)
}

// releaseNetIfUnused removes a subnet network that no attachment records:
// its bridge, its IPAM state and its conflist. The caller holds the
// network's lock, so no ADD runs meanwhile.
func (m *Manager) releaseNetIfUnused(n *bridgeNet) error {
	entries, err := os.ReadDir(m.recordDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list attachment records: %w", err)
	}
	for _, e := range entries {
		r, err := m.readRecord(e.Name())
		if err != nil {
			return err
		}
		if r != nil && r.Name == n.name {
			return nil
		}
	}
	if err := DeleteLink(n.bridge); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(m.ipamDir(), n.name)); err != nil {
		return fmt.Errorf("remove ipam state of %s: %w", n.name, err)
	}
	if err := os.Remove(filepath.Join(m.netsDir(), n.name+".conflist")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove conflist of %s: %w", n.name, err)
	}
	return nil
}

// collectNets removes the subnet networks that no attachment records: left
// by a crash between the last teardown of a subnet and its removal.
func (m *Manager) collectNets() error {
	files, err := filepath.Glob(filepath.Join(m.netsDir(), "*.conflist"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		list, err := libcni.ConfListFromBytes(b)
		if err != nil || len(list.Plugins) == 0 {
			errs = append(errs, fmt.Errorf("parse %s: %w", f, err))
			continue
		}
		var conf struct {
			Bridge string `json:"bridge"`
			IPAM   struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		}
		if err := json.Unmarshal(list.Plugins[0].Bytes, &conf); err != nil || len(conf.IPAM.Ranges) == 0 || len(conf.IPAM.Ranges[0]) == 0 {
			errs = append(errs, fmt.Errorf("parse bridge of %s: %w", f, err))
			continue
		}
		prefix, err := netip.ParsePrefix(conf.IPAM.Ranges[0][0].Subnet)
		if err != nil {
			errs = append(errs, fmt.Errorf("subnet of %s: %w", f, err))
			continue
		}
		n, err := newBridgeNet(list.Name, conf.Bridge, prefix, m.ipamDir(), m.masq)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		unlock := m.netLocks.lock(n.name)
		err = m.releaseNetIfUnused(n)
		unlock()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DeleteLink deletes the network interface name; a missing one is fine.
func DeleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", "dev", name).CombinedOutput(); err != nil {
		if _, err2 := net.InterfaceByName(name); err2 != nil {
			return nil // gone meanwhile
		}
		return fmt.Errorf("delete bridge %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
