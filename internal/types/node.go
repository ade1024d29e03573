package types

import (
	"strings"
	"time"
)

// Node is one machine that runs container groups. Its agent registers it
// and keeps capacity and addresses current; an operator cordons and drains
// it; the node controller sets its conditions from its lease. Every write
// is revision-checked, so the three never overwrite each other.
type Node struct {
	Name   string            `json:"name"`
	Zone   string            `json:"zone,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Capacity is the machine; Allocatable what groups may request of it.
	Capacity    NodeResources `json:"capacity"`
	Allocatable NodeResources `json:"allocatable"`
	// Addresses are the node's IPv4 addresses; the first is where the
	// other nodes route the traffic of its groups.
	Addresses []string `json:"addresses,omitempty"`
	// Endpoint is the https URL of the agent's node server (logs, exec,
	// attach); empty for the in-process agent of `berth server`, which
	// the API reaches without a network.
	Endpoint string `json:"endpoint,omitempty"`
	// Version is the agent's build.
	Version string `json:"version,omitempty"`
	// IsolationLevels are the levels the node runs groups under ("runc",
	// "sandboxed"); the first is its default.
	IsolationLevels []string `json:"isolationLevels,omitempty"`
	// Unschedulable (cordoned): no new group is placed on the node.
	Unschedulable bool `json:"unschedulable,omitempty"`
	// Draining: the node's groups are moved to other nodes; it stays
	// unschedulable until uncordoned.
	Draining   bool            `json:"draining,omitempty"`
	Conditions []NodeCondition `json:"conditions,omitempty"`
	CreatedAt  time.Time       `json:"createdAt"`
}

// NodeResources is an amount of node resources.
type NodeResources struct {
	CPU      float64 `json:"cpu"`
	MemoryGB float64 `json:"memoryInGB"`
	// GPUs counts the node's GPUs by sku (K80, P100, V100, ...).
	GPUs map[string]int32 `json:"gpus,omitempty"`
}

// Node condition types and statuses, as Kubernetes names them.
const (
	NodeReady = "Ready"

	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"
)

// NodeCondition is one observed fact about a node.
type NodeCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	// Reason is a CamelCase word (LeaseExpired, AgentReady), Message a
	// sentence for people.
	Reason             string    `json:"reason,omitempty"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Condition returns the node's condition of type t, or nil.
func (n *Node) Condition(t string) *NodeCondition {
	for i := range n.Conditions {
		if n.Conditions[i].Type == t {
			return &n.Conditions[i]
		}
	}
	return nil
}

// Ready reports whether the node's Ready condition is True.
func (n *Node) Ready() bool {
	c := n.Condition(NodeReady)
	return c != nil && c.Status == ConditionTrue
}

// SetCondition records c, keeping the transition time when the status
// does not change. It reports whether anything changed.
func (n *Node) SetCondition(c NodeCondition) bool {
	old := n.Condition(c.Type)
	if old == nil {
		n.Conditions = append(n.Conditions, c)
		return true
	}
	if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
		return false
	}
	if old.Status == c.Status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	*old = c
	return true
}

// Lease is a node's heartbeat: its agent renews it every few seconds, and
// the node controller marks the node NotReady once RenewedAt + TTL has
// passed. The server stamps RenewedAt with its own clock, so an agent's
// clock never matters.
type Lease struct {
	Node      string    `json:"node"`
	RenewedAt time.Time `json:"renewedAt"`
	// TTLSeconds is how long the lease holds without renewal.
	TTLSeconds int `json:"ttlSeconds"`
}

// Expired reports whether the lease has lapsed at now.
func (l *Lease) Expired(now time.Time) bool {
	return now.After(l.RenewedAt.Add(time.Duration(l.TTLSeconds) * time.Second))
}

// JoinToken lets one agent, or with Role JoinServer one server, join the
// cluster once, before it expires. Only a hash of its secret is stored.
type JoinToken struct {
	// ID is the public half of the token, and its store key.
	ID string `json:"id"`
	// Role is what may join with the token: JoinNode or JoinServer. A
	// server gets the CA's key and the admin token, so the roles never mix.
	Role JoinRole `json:"role,omitempty"`
	// SecretHash is the hex SHA-256 of the secret half.
	SecretHash  string    `json:"secretHash"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	// UsedBy is the node that joined with the token, at UsedAt; a used
	// token is refused.
	UsedBy string    `json:"usedBy,omitempty"`
	UsedAt time.Time `json:"usedAt,omitzero"`
}

// JoinRole is what a join token admits.
type JoinRole string

const (
	// JoinNode admits a node agent (the empty role, as tokens made before
	// servers could join have).
	JoinNode JoinRole = ""
	// JoinServer admits a server with its own etcd member.
	JoinServer JoinRole = "server"
)

// IPClaim is the claim on one group address, stored under
// PrefixIPClaims + network + "/" + ip: addresses are allocated for the
// whole cluster, so a group keeps its address on every node it runs on.
type IPClaim struct {
	IP       string `json:"ip"`
	GroupKey string `json:"groupKey"`
	GroupUID string `json:"groupUID"`
}

// Network names for IP claims: the public subnet, or a virtual network
// subnet by its network key and subnet name.
const PublicNetwork = "public"

// IPNetwork is the network a group's address comes from, as IPClaim keys
// name it.
func IPNetwork(g *ContainerGroup) string {
	if sn := g.Spec.Subnet; sn != nil {
		return strings.ReplaceAll(sn.VirtualNetwork, "/", "_") + "_" + strings.ToLower(sn.Name)
	}
	return PublicNetwork
}

// IPClaimKey is the store key (below PrefixIPClaims) of the claim on ip in
// network.
func IPClaimKey(network, ip string) string { return network + "/" + ip }

// Endpoint kinds, as the firewall treats them.
const (
	EndpointPublic  = "Public"
	EndpointPrivate = "Private"
	EndpointNone    = "None"
)

// Endpoint is what every node must know of a group that runs anywhere in
// the cluster: where to route its address, and which traffic its firewall
// rules let through. The same rules are built on every node.
type Endpoint struct {
	// Group is the group's store key.
	Group        string `json:"group"`
	UID          string `json:"uid"`
	Subscription string `json:"subscription"`
	IP           string `json:"ip"`
	// Node is the node the group is bound to.
	Node string `json:"node"`
	// Kind is EndpointPublic, EndpointPrivate or EndpointNone.
	Kind string `json:"kind"`
	// Ports are what a public group declared.
	Ports []Port `json:"ports,omitempty"`
	// VirtualNetwork and SubnetPrefix place a private group.
	VirtualNetwork string `json:"virtualNetwork,omitempty"`
	SubnetPrefix   string `json:"subnetPrefix,omitempty"`
}

// EndpointOf is the endpoint of g, and false when g has none: it has no
// address yet, is not bound to a node, or is stopped (a stopped group
// keeps its address, but nothing answers on it).
func EndpointOf(g *ContainerGroup) (Endpoint, bool) {
	if g.IP == "" || g.NodeName == "" || g.Stopped {
		return Endpoint{}, false
	}
	e := Endpoint{Group: g.Key(), UID: g.UID, Subscription: strings.ToLower(g.Subscription), IP: g.IP, Node: g.NodeName, Kind: EndpointNone}
	switch {
	case g.Spec.Subnet != nil:
		e.Kind, e.VirtualNetwork, e.SubnetPrefix = EndpointPrivate, g.Spec.Subnet.VirtualNetwork, g.Spec.Subnet.AddressPrefix
	case g.Spec.IPAddress != nil && g.Spec.IPAddress.Type == "Public":
		e.Kind = EndpointPublic
		e.Ports = g.Spec.IPAddress.Ports
	}
	return e, true
}

// ClusterInfo is what an agent learns from the control plane when it
// registers: the settings every node must share.
type ClusterInfo struct {
	// PublicSubnet is the subnet of public groups' addresses, the same
	// on every node's public bridge.
	PublicSubnet string `json:"publicSubnet"`
	// LeaseTTLSeconds is how long the node's lease holds;
	// LeaseRenewSeconds how often the agent renews it.
	LeaseTTLSeconds   int `json:"leaseTTLSeconds"`
	LeaseRenewSeconds int `json:"leaseRenewSeconds"`
}
