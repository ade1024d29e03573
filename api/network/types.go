// Package network holds the ARM wire model of the small part of
// Microsoft.Network that Berth serves: virtual networks and their subnets,
// with delegation to Microsoft.ContainerInstance. Microsoft.Network has its
// own api-versions; the shapes used here are the same in all recent ones,
// so the server accepts any. It only describes JSON.
package network

// Resource types.
const (
	VirtualNetworkType = "Microsoft.Network/virtualNetworks"
	SubnetType         = "Microsoft.Network/virtualNetworks/subnets"
	DelegationType     = "Microsoft.Network/virtualNetworks/subnets/delegations"
)

// VirtualNetwork is the PUT body and the GET/list response.
type VirtualNetwork struct {
	ID         string                    `json:"id,omitempty"`
	Name       string                    `json:"name,omitempty"`
	Type       string                    `json:"type,omitempty"`
	Location   string                    `json:"location,omitempty"`
	Tags       map[string]string         `json:"tags,omitempty"`
	Properties *VirtualNetworkProperties `json:"properties,omitempty"`
}

// VirtualNetworkProperties is a network's properties object.
type VirtualNetworkProperties struct {
	ProvisioningState string        `json:"provisioningState,omitempty"`
	AddressSpace      *AddressSpace `json:"addressSpace,omitempty"`
	Subnets           []Subnet      `json:"subnets"`
}

// AddressSpace lists the network's CIDRs.
type AddressSpace struct {
	AddressPrefixes []string `json:"addressPrefixes"`
}

// Subnet is a subnet inside a network's properties or the body of the
// subnet routes.
type Subnet struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Type       string            `json:"type,omitempty"`
	Properties *SubnetProperties `json:"properties,omitempty"`
}

// SubnetProperties is a subnet's properties object.
type SubnetProperties struct {
	ProvisioningState string       `json:"provisioningState,omitempty"`
	AddressPrefix     string       `json:"addressPrefix,omitempty"`
	Delegations       []Delegation `json:"delegations"`
	// IPConfigurations is not modelled; ACI reports the groups of a subnet
	// through serviceAssociationLinks, which Berth does not serve.
}

// Delegation hands a subnet to a service.
type Delegation struct {
	ID         string                `json:"id,omitempty"`
	Name       string                `json:"name,omitempty"`
	Type       string                `json:"type,omitempty"`
	Properties *DelegationProperties `json:"properties,omitempty"`
}

// DelegationProperties names the service.
type DelegationProperties struct {
	ServiceName       string `json:"serviceName,omitempty"`
	ProvisioningState string `json:"provisioningState,omitempty"`
}

// VirtualNetworkList is a page of a list response.
type VirtualNetworkList struct {
	Value    []VirtualNetwork `json:"value"`
	NextLink string           `json:"nextLink,omitempty"`
}

// SubnetList is a page of the subnet list response.
type SubnetList struct {
	Value    []Subnet `json:"value"`
	NextLink string   `json:"nextLink,omitempty"`
}
