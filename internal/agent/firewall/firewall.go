// Package firewall filters the traffic to container groups with one
// nftables table per node network (named after the public bridge, so that
// several servers on one host never share it).
//
// The table is always rebuilt whole from a State, in one nft transaction
// (add table, delete table, add everything): a restarted agent leaves
// neither holes nor stale rules, and a reader never sees half a table.
//
// The State holds every group of the cluster, wherever it runs, so the
// address sets and the per-group and per-network chains are the same on
// every node; only which bridges are local differs. A group's packet is
// filtered on the node it leaves (its own node's group bridge) and again on
// the node of its destination (the node uplink).
//
// What the table does, on the forward hook (bridged traffic passes it too,
// with br_netfilter and bridge-nf-call-iptables=1):
//   - packets of established or related connections pass;
//   - a packet to a group's address goes to that group's chain:
//     a Public group accepts its own traffic and its declared (protocol,
//     port) pairs, but nothing from a group of another subscription;
//     a Private group (virtual network) accepts only what comes from its
//     network's subnets, through one of the network's bridges on this
//     node or from another node (an interface that is no group bridge of
//     this node: the sending node checked the bridge there); a group
//     without an IP address accepts nothing but its own hairpin traffic;
//   - a packet to any other address of a managed prefix (a group not yet or
//     no longer known) is dropped, so a new group is closed until its rules
//     exist;
//   - everything else (egress to the world) passes.
//
// On the postrouting hook, traffic from a group to an address outside every
// managed prefix (the world, other nodes' host addresses) is masqueraded
// behind the node's address; traffic between groups, on one node or two,
// keeps its source address, which is what the destination's rules check.
//
// On the input hook, the node protects itself: a packet from a group
// address to any address of the host (the bridge gateways included) is
// dropped unless it belongs to a connection the host opened, or goes to one
// of the host ports the operator allowed (Options.HostPorts). So a workload
// cannot reach the Berth API, etcd or any other service of the node.
//
// Traffic from the host itself takes the output hook, which is not
// filtered: the node is trusted (probes and operators reach every port).
//
// A Firewall is fed in two halves, each by one writer: the node's own
// groups (Apply: the agent, from the attachments it made) and the groups
// of the other nodes (ApplyCluster: the agent's view of the cluster's
// endpoints). The table is built from both; where both name one address,
// the node's own attachment wins, being what is on its bridge.
//
// The network between the nodes is trusted as the nodes are: a packet from
// another node that claims a virtual network's source address is taken to
// come from that network's group there.
package firewall

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"
)

// Kinds of group addresses.
const (
	// KindPublic is a group with a public IP and declared ports.
	KindPublic = "Public"
	// KindPrivate is a group in a virtual network subnet.
	KindPrivate = "Private"
	// KindNone is a group without an ipAddress: no inbound traffic.
	KindNone = "None"
)

// Port is a declared port of a public group.
type Port struct {
	// Protocol is "tcp" or "udp".
	Protocol string
	Port     uint16
}

// Group is one group of the cluster as the firewall sees it.
type Group struct {
	// Name is the group's store key, used in comments.
	Name         string
	UID          string
	Subscription string
	IP           netip.Addr
	Kind         string
	// Ports are what a Public group accepts from outside.
	Ports []Port
	// VirtualNetwork is a Private group's network (store key).
	VirtualNetwork string
	// Bridge is the bridge the group is attached to when it runs on this
	// node; empty for a group of another node.
	Bridge string
	// Subnet is the prefix of the group's network: the public subnet, or
	// its virtual network subnet.
	Subnet netip.Prefix
}

// State is everything the table is built from.
type State struct {
	// Managed are the prefixes whose addresses belong to groups (the public
	// subnet and every virtual network subnet in use).
	Managed []netip.Prefix
	// Bridges are this node's group bridges (the public one and the
	// subnet bridges in use); the Bridge of every local group counts too.
	// A packet that enters through none of them comes from another node.
	Bridges []string
	// Groups are the groups of the whole cluster.
	Groups []Group
}

// TableName is the table of the node whose public bridge is bridge.
func TableName(bridge string) string { return "berth-" + bridge }

// runner is what Firewall needs of knftables (the real nft binary, or the
// fake in unit tests).
type runner interface {
	NewTransaction() *knftables.Transaction
	Run(ctx context.Context, tx *knftables.Transaction) error
}

// Firewall applies States to one table.
type Firewall struct {
	nft       runner
	table     string
	hostPorts []Port

	mu      sync.Mutex
	local   State  // the node's own groups (Apply)
	cluster State  // the other nodes' groups (ApplyCluster)
	last    string // the script of the last applied transaction
	applied bool
}

// New returns the firewall of table; it fails when nft or the kernel's
// nf_tables are missing. Groups may reach the host only on hostPorts.
func New(table string, hostPorts []Port) (*Firewall, error) {
	nft, err := knftables.New(knftables.IPv4Family, table)
	if err != nil {
		return nil, fmt.Errorf("nftables for table %s: %w", table, err)
	}
	return &Firewall{nft: nft, table: table, hostPorts: hostPorts}, nil
}

// ParsePort reads a port as "tcp:8443" or "udp:53".
func ParsePort(s string) (Port, error) {
	proto, num, ok := strings.Cut(strings.ToLower(s), ":")
	n, err := strconv.ParseUint(num, 10, 16)
	if !ok || (proto != "tcp" && proto != "udp") || err != nil || n == 0 {
		return Port{}, fmt.Errorf("port %q: want tcp:PORT or udp:PORT", s)
	}
	return Port{Protocol: proto, Port: uint16(n)}, nil
}

// Table is the table's name.
func (f *Firewall) Table() string { return f.table }

// Apply replaces the node's own half of the State with st, the groups
// attached on this node, and rebuilds the table from both halves; the
// table is deleted when neither has a group. A table equal to the last
// applied one is not applied again.
func (f *Firewall) Apply(ctx context.Context, st State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local = st
	return f.applyLocked(ctx)
}

// ApplyCluster replaces the other nodes' half of the State with st: their
// groups (without a Bridge here) and the prefixes they use. Its Bridges
// are ignored: only the node's own half knows its bridges.
func (f *Firewall) ApplyCluster(ctx context.Context, st State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cluster = st
	return f.applyLocked(ctx)
}

func (f *Firewall) applyLocked(ctx context.Context) error {
	tx := f.nft.NewTransaction()
	build(tx, f.table, Merge(f.local, f.cluster), f.hostPorts)
	script := tx.String()
	if f.applied && script == f.last {
		return nil
	}
	if err := f.nft.Run(ctx, tx); err != nil {
		f.applied = false
		return fmt.Errorf("apply nftables table %s: %w", f.table, err)
	}
	f.last, f.applied = script, true
	return nil
}

// Invalidate makes the next Apply run even if its State is the one last
// applied: the agent calls it on every resync, so a table changed or
// removed behind its back is restored.
func (f *Firewall) Invalidate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = false
}

// Delete forgets both halves and removes the table if it exists.
func (f *Firewall) Delete(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local, f.cluster = State{}, State{}
	return f.applyLocked(ctx)
}

// Merge is the State of a node whose own groups are local and whose
// cluster's other groups are others: the prefixes of both, the bridges of
// local, the groups of local and those of others at an address no group
// of local has (a group that moved here is still attached on its old
// node for a moment, and the node must filter what is on its bridges);
// among others, the first group at an address.
func Merge(local, others State) State {
	out := State{
		Managed: append(slices.Clone(local.Managed), others.Managed...),
		Bridges: slices.Clone(local.Bridges),
		Groups:  slices.Clone(local.Groups),
	}
	seen := make(map[netip.Addr]bool, len(local.Groups)+len(others.Groups))
	for _, g := range local.Groups {
		seen[g.IP] = true
	}
	for _, g := range others.Groups {
		if seen[g.IP] {
			continue
		}
		seen[g.IP] = true
		g.Bridge = ""
		out.Groups = append(out.Groups, g)
	}
	return out
}

// build fills tx with the operations that replace the table with st. The
// add before the delete makes the delete succeed whether the table existed
// or not; nft runs the whole transaction atomically.
func build(tx *knftables.Transaction, table string, st State, hostPorts []Port) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if len(st.Groups) == 0 {
		return
	}
	groups := slices.Clone(st.Groups)
	slices.SortFunc(groups, func(a, b Group) int { return a.IP.Compare(b.IP) })

	tx.Add(&knftables.Table{Comment: knftables.PtrTo("Berth: filter of container group traffic, rebuilt whole from the desired state")})
	tx.Add(&knftables.Set{Name: "managed", Type: "ipv4_addr", Flags: []knftables.SetFlag{knftables.IntervalFlag},
		Comment: knftables.PtrTo("prefixes of group addresses")})
	for _, p := range mergePrefixes(st.Managed) {
		tx.Add(&knftables.Element{Set: "managed", Key: []string{p.String()}})
	}
	tx.Add(&knftables.Set{Name: "bridges", Type: "ifname", Comment: knftables.PtrTo("group bridges of this node")})
	for _, b := range localBridges(st) {
		tx.Add(&knftables.Element{Set: "bridges", Key: []string{`"` + b + `"`}})
	}

	// One set of addresses per subscription, for tenant isolation.
	tenants := map[string]string{}
	var subs []string
	for _, g := range groups {
		if _, ok := tenants[g.Subscription]; !ok {
			tenants[g.Subscription] = tenantSet(g.Subscription)
			subs = append(subs, g.Subscription)
		}
	}
	slices.Sort(subs)
	for _, sub := range subs {
		tx.Add(&knftables.Set{Name: tenants[sub], Type: "ipv4_addr", Comment: knftables.PtrTo("subscription " + sub)})
	}
	for _, g := range groups {
		tx.Add(&knftables.Element{Set: tenants[g.Subscription], Key: []string{g.IP.String()}})
	}

	// Per-network chains of private groups.
	type vnet struct {
		bridges  []string
		prefixes []netip.Prefix
	}
	vnets := map[string]*vnet{}
	var vnetKeys []string
	for _, g := range groups {
		if g.Kind != KindPrivate {
			continue
		}
		v := vnets[g.VirtualNetwork]
		if v == nil {
			v = &vnet{}
			vnets[g.VirtualNetwork] = v
			vnetKeys = append(vnetKeys, g.VirtualNetwork)
		}
		if g.Bridge != "" && !slices.Contains(v.bridges, g.Bridge) {
			v.bridges = append(v.bridges, g.Bridge)
		}
		if !slices.Contains(v.prefixes, g.Subnet.Masked()) {
			v.prefixes = append(v.prefixes, g.Subnet.Masked())
		}
	}
	slices.Sort(vnetKeys)
	for _, k := range vnetKeys {
		v := vnets[k]
		slices.Sort(v.bridges)
		slices.SortFunc(v.prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		chain := vnetChain(k)
		prefixes := anonSet(prefixStrings(v.prefixes))
		tx.Add(&knftables.Chain{Name: chain, Comment: knftables.PtrTo("virtual network " + k)})
		if len(v.bridges) > 0 {
			tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(
				"iifname", anonSet(quoteAll(v.bridges)), "ip saddr", prefixes, "accept")})
		}
		// From another node: its own bridge check let the packet out.
		tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(
			"iifname != @bridges ip saddr", prefixes, "accept")})
		tx.Add(&knftables.Rule{Chain: chain, Rule: "drop"})
	}

	// Per-group chains of public groups and groups without an address.
	verdict := map[netip.Addr]string{}
	for _, g := range groups {
		if g.Kind == KindPrivate {
			verdict[g.IP] = "goto " + vnetChain(g.VirtualNetwork)
			continue
		}
		chain := groupChain(g.UID)
		verdict[g.IP] = "goto " + chain
		tx.Add(&knftables.Chain{Name: chain, Comment: knftables.PtrTo(strings.ToLower(g.Kind) + " group " + g.Name)})
		tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat("ip saddr", g.IP, "accept")})
		if g.Kind == KindPublic {
			tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat(
				"ip saddr @managed ip saddr != @"+tenants[g.Subscription], "drop")})
			if ports := portElements(g.Ports); len(ports) > 0 {
				tx.Add(&knftables.Rule{Chain: chain, Rule: knftables.Concat("meta l4proto . th dport", anonSet(ports), "accept")})
			}
		}
		tx.Add(&knftables.Rule{Chain: chain, Rule: "drop"})
	}

	tx.Add(&knftables.Map{Name: "groups", Type: "ipv4_addr : verdict", Comment: knftables.PtrTo("group address to its chain")})
	for _, g := range groups {
		tx.Add(&knftables.Element{Map: "groups", Key: []string{g.IP.String()}, Value: []string{verdict[g.IP]}})
	}

	tx.Add(&knftables.Chain{
		Name:     "forward",
		Type:     knftables.PtrTo(knftables.FilterType),
		Hook:     knftables.PtrTo(knftables.ForwardHook),
		Priority: knftables.PtrTo(knftables.FilterPriority),
		Policy:   knftables.PtrTo(knftables.AcceptPolicy),
	})
	tx.Add(&knftables.Rule{Chain: "forward", Rule: "ct state established,related accept"})
	tx.Add(&knftables.Rule{Chain: "forward", Rule: "ip daddr vmap @groups"})
	tx.Add(&knftables.Rule{Chain: "forward", Rule: "ip daddr @managed drop"})

	tx.Add(&knftables.Chain{
		Name:     "input",
		Type:     knftables.PtrTo(knftables.FilterType),
		Hook:     knftables.PtrTo(knftables.InputHook),
		Priority: knftables.PtrTo(knftables.FilterPriority),
		Policy:   knftables.PtrTo(knftables.AcceptPolicy),
		Comment:  knftables.PtrTo("groups reach the host only on allowed ports"),
	})
	tx.Add(&knftables.Rule{Chain: "input", Rule: "ct state established,related accept"})
	if ports := portElements(hostPorts); len(ports) > 0 {
		tx.Add(&knftables.Rule{Chain: "input", Rule: knftables.Concat("ip saddr @managed meta l4proto . th dport", anonSet(ports), "accept")})
	}
	tx.Add(&knftables.Rule{Chain: "input", Rule: "ip saddr @managed drop"})

	tx.Add(&knftables.Chain{
		Name:     "postrouting",
		Type:     knftables.PtrTo(knftables.NATType),
		Hook:     knftables.PtrTo(knftables.PostroutingHook),
		Priority: knftables.PtrTo(knftables.SNATPriority),
		Comment:  knftables.PtrTo("groups reach the world behind the node's address, other groups with their own"),
	})
	tx.Add(&knftables.Rule{Chain: "postrouting", Rule: "ip saddr @managed ip daddr != @managed masquerade"})
}

// localBridges are the group bridges of this node: the State's and those
// of its local groups, sorted and without duplicates.
func localBridges(st State) []string {
	out := slices.Clone(st.Bridges)
	for _, g := range st.Groups {
		if g.Bridge != "" {
			out = append(out, g.Bridge)
		}
	}
	out = slices.DeleteFunc(out, func(b string) bool { return b == "" })
	slices.Sort(out)
	return slices.Compact(out)
}

// groupChain names a group's chain after its UID.
func groupChain(uid string) string {
	if len(uid) > 16 {
		uid = uid[:16]
	}
	return "group-" + uid
}

// vnetChain names a virtual network's chain after a hash of its key.
func vnetChain(key string) string { return "vnet-" + shortHash(key) }

// tenantSet names a subscription's address set after a hash of its id.
func tenantSet(sub string) string { return "tenant-" + shortHash(strings.ToLower(sub)) }

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

func anonSet(items []string) string { return "{ " + strings.Join(items, ", ") + " }" }

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = `"` + s + `"`
	}
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// portElements renders ports as "tcp . 80" concatenations, sorted and
// without duplicates.
func portElements(ports []Port) []string {
	var out []string
	for _, p := range ports {
		e := strings.ToLower(p.Protocol) + " . " + fmt.Sprint(p.Port)
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// mergePrefixes drops prefixes contained in others: nft refuses
// overlapping elements in an interval set.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		sorted = append(sorted, p.Masked())
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits()
		}
		return a.Addr().Compare(b.Addr())
	})
	var out []netip.Prefix
	for _, p := range sorted {
		if !slices.ContainsFunc(out, func(o netip.Prefix) bool { return o.Contains(p.Addr()) }) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}

// bridgeNFCall is the switch that sends bridged IPv4 traffic through the
// ip hooks (module br_netfilter).
const bridgeNFCall = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// CheckBridgeFilter reports whether traffic between groups on one bridge
// passes the forward hook; without it only routed traffic is filtered.
func CheckBridgeFilter() error {
	b, err := os.ReadFile(bridgeNFCall)
	if err != nil {
		return fmt.Errorf("br_netfilter is not loaded (%w): traffic between groups on one bridge is not filtered; run hack/setup.sh", err)
	}
	if strings.TrimSpace(string(b)) != "1" {
		return fmt.Errorf("%s is %s: traffic between groups on one bridge is not filtered; set it to 1 (hack/setup.sh does)", bridgeNFCall, strings.TrimSpace(string(b)))
	}
	return nil
}
