package client

import armv1 "github.com/berth-dev/berth/api/v20230501"

// ContainerGroupRequest is the body of a container group PUT: the modelled
// wire type plus the group-level fields of 2023-05-01 that
// api/v20230501.ContainerGroupProperties does not carry yet. Embedding keeps
// the two from drifting apart: a field added there later is shadowed here
// by the identical JSON name, so the body stays the same.
type ContainerGroupRequest struct {
	Location   string                 `json:"location,omitempty"`
	Tags       map[string]string      `json:"tags,omitempty"`
	Zones      []string               `json:"zones,omitempty"`
	Properties GroupPropertiesRequest `json:"properties"`
}

// GroupPropertiesRequest is the properties object of a PUT body.
type GroupPropertiesRequest struct {
	armv1.ContainerGroupProperties
	ImageRegistryCredentials []armv1.ImageRegistryCredential `json:"imageRegistryCredentials,omitempty"`
	Volumes                  []armv1.Volume                  `json:"volumes,omitempty"`
	SubnetIDs                []SubnetID                      `json:"subnetIds,omitempty"`
}

// SubnetID is a virtual network subnet the group joins.
type SubnetID struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}
