package types

import "time"

// Store key prefixes. Every component that reads or writes the store builds
// keys here, so the layout is written down once.
const (
	PrefixResourceGroups = "resourcegroups/"
	PrefixGroups         = "groups/"
	PrefixGroupStatus    = "groupstatus/"
	PrefixOperations     = "operations/"
	// PrefixVirtualNetworks holds types.VirtualNetwork by VirtualNetworkKey.
	PrefixVirtualNetworks = "virtualnetworks/"
	// PrefixDNSNames holds the DNS name claims, keyed by FQDN.
	PrefixDNSNames = "dnsnames/"
	// PrefixNodes holds types.Node by node name, PrefixLeases their
	// types.Lease, PrefixJoinTokens the types.JoinToken by id.
	PrefixNodes      = "nodes/"
	PrefixLeases     = "leases/"
	PrefixJoinTokens = "jointokens/"
	// PrefixIPClaims holds the types.IPClaim of every allocated group
	// address, by IPClaimKey.
	PrefixIPClaims = "ipclaims/"
	// PrefixServers holds a types.Server per server of the cluster, by
	// name: where its API is, for clients and `berth cluster show`.
	PrefixServers = "servers/"
	// KeyTenant holds the installation's tenant id (a Tenant), made on
	// the first start.
	KeyTenant = "config/tenant"
)

// Operation kinds.
const (
	OperationCreate  = "create"
	OperationUpdate  = "update"
	OperationDelete  = "delete"
	OperationStart   = "start"
	OperationRestart = "restart"
)

// Operation statuses, as the Azure-AsyncOperation contract names them.
const (
	OperationPending   = "Pending"
	OperationSucceeded = "Succeeded"
	OperationFailed    = "Failed"
	OperationCanceled  = "Canceled"
)

// Operation is a long-running operation on a container group. Its status is
// derived from the group's state when polled and frozen once terminal.
type Operation struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`
	Subscription string    `json:"subscription"`
	Location     string    `json:"location"`
	GroupKey     string    `json:"groupKey"`
	GroupUID     string    `json:"groupUID"`
	Generation   int64     `json:"generation"`
	Restarts     int64     `json:"restarts,omitempty"`
	ResourceID   string    `json:"resourceID"`
	Status       string    `json:"status"`
	ErrorCode    string    `json:"errorCode,omitempty"`
	ErrorMessage string    `json:"errorMessage,omitempty"`
	StartTime    time.Time `json:"startTime"`
	EndTime      time.Time `json:"endTime,omitzero"`
}

// Tenant is the installation's tenant: Berth has one per installation. Its
// id feeds the hashed DNS names of the TenantReuse and narrower scopes.
type Tenant struct {
	ID string `json:"id"`
}
