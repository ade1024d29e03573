package types

import (
	"strings"
	"time"
)

// VirtualNetwork is a Microsoft.Network virtual network: an address space
// split into subnets. Groups are placed in a subnet (GroupSpec.Subnet) and
// get a private address from it on that subnet's own bridge.
type VirtualNetwork struct {
	Subscription  string            `json:"subscription"`
	ResourceGroup string            `json:"resourceGroup"`
	Name          string            `json:"name"`
	Location      string            `json:"location"`
	Tags          map[string]string `json:"tags,omitempty"`
	// AddressPrefixes are IPv4 CIDRs, masked.
	AddressPrefixes []string  `json:"addressPrefixes"`
	Subnets         []Subnet  `json:"subnets,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
}

// Subnet is a subnet of a virtual network.
type Subnet struct {
	Name string `json:"name"`
	// AddressPrefix is an IPv4 CIDR inside the network's address space.
	AddressPrefix string       `json:"addressPrefix"`
	Delegations   []Delegation `json:"delegations,omitempty"`
}

// Delegation hands a subnet to a service.
type Delegation struct {
	Name        string `json:"name"`
	ServiceName string `json:"serviceName"`
}

// ContainerGroupDelegation is the service a subnet must be delegated to
// before container groups may use it.
const ContainerGroupDelegation = "Microsoft.ContainerInstance/containerGroups"

// Subnet returns the subnet called name (case-insensitive), or nil.
func (v *VirtualNetwork) Subnet(name string) *Subnet {
	for i := range v.Subnets {
		if strings.EqualFold(v.Subnets[i].Name, name) {
			return &v.Subnets[i]
		}
	}
	return nil
}

// Key returns the network's store key suffix, like ContainerGroup.Key.
func (v *VirtualNetwork) Key() string {
	return VirtualNetworkKey(v.Subscription, v.ResourceGroup, v.Name)
}

// VirtualNetworkKey identifies a virtual network in the store.
func VirtualNetworkKey(subscription, resourceGroup, name string) string {
	return GroupKey(subscription, resourceGroup, name)
}

// SubnetRef places a group in a virtual network subnet. The API resolves
// it when the group is written, so the agent needs nothing but the group:
// a subnet in use cannot change its prefix or go away.
type SubnetRef struct {
	// ID is the subnet's ARM id as the user wrote it.
	ID string `json:"id"`
	// VirtualNetwork is the network's store key (VirtualNetworkKey).
	VirtualNetwork string `json:"virtualNetwork"`
	// Name is the subnet's name, as stored in the network.
	Name string `json:"name"`
	// AddressPrefix is the subnet's IPv4 CIDR.
	AddressPrefix string `json:"addressPrefix"`
}
