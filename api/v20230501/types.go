// Package v20230501 holds the ARM wire model of Microsoft.ContainerInstance
// at api-version 2023-05-01, the version the Azure SDK for Go
// (armcontainerinstance/v2 v2.4.0) speaks. It only describes JSON; the API
// server converts it to and from Berth's internal model.
package v20230501

// APIVersion is the api-version this package models.
const APIVersion = "2023-05-01"

// ResourceType is the ARM type of a container group.
const ResourceType = "Microsoft.ContainerInstance/containerGroups"

// ContainerGroup is the PUT body and the GET/list response.
type ContainerGroup struct {
	ID         string                    `json:"id,omitempty"`
	Name       string                    `json:"name,omitempty"`
	Type       string                    `json:"type,omitempty"`
	Location   string                    `json:"location,omitempty"`
	Tags       map[string]string         `json:"tags,omitempty"`
	Zones      []string                  `json:"zones,omitempty"`
	Properties *ContainerGroupProperties `json:"properties,omitempty"`
}

// ContainerGroupProperties is the group's properties object.
type ContainerGroupProperties struct {
	ProvisioningState        string                    `json:"provisioningState,omitempty"`
	Containers               []Container               `json:"containers"`
	OSType                   string                    `json:"osType,omitempty"`
	RestartPolicy            string                    `json:"restartPolicy,omitempty"`
	IPAddress                *IPAddress                `json:"ipAddress,omitempty"`
	SKU                      string                    `json:"sku,omitempty"`
	InitContainers           []Container               `json:"initContainers"`
	InstanceView             *InstanceView             `json:"instanceView,omitempty"`
	Volumes                  []Volume                  `json:"volumes,omitempty"`
	ImageRegistryCredentials []ImageRegistryCredential `json:"imageRegistryCredentials,omitempty"`
	DNSConfig                *DNSConfig                `json:"dnsConfig,omitempty"`
}

// Container is one container of a group.
type Container struct {
	Name       string               `json:"name"`
	Properties *ContainerProperties `json:"properties,omitempty"`
}

// ContainerProperties describes what a container runs.
type ContainerProperties struct {
	Image                string                 `json:"image,omitempty"`
	Command              []string               `json:"command,omitempty"`
	Ports                []ContainerPort        `json:"ports,omitempty"`
	EnvironmentVariables []EnvironmentVariable  `json:"environmentVariables"`
	Resources            *ResourceRequirements  `json:"resources,omitempty"`
	VolumeMounts         []VolumeMount          `json:"volumeMounts,omitempty"`
	LivenessProbe        *ContainerProbe        `json:"livenessProbe,omitempty"`
	ReadinessProbe       *ContainerProbe        `json:"readinessProbe,omitempty"`
	InstanceView         *ContainerInstanceView `json:"instanceView,omitempty"`
}

// ContainerPort is a port a container exposes inside its group.
type ContainerPort struct {
	Port     *int32 `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// EnvironmentVariable is a name with a value or a secure value. The secure
// value is write-only.
type EnvironmentVariable struct {
	Name        string  `json:"name"`
	Value       *string `json:"value,omitempty"`
	SecureValue *string `json:"secureValue,omitempty"`
}

// ResourceRequirements holds requests and optional limits.
type ResourceRequirements struct {
	Requests *ResourceRequests `json:"requests,omitempty"`
	Limits   *ResourceLimits   `json:"limits,omitempty"`
}

// ResourceRequests are the reserved resources.
type ResourceRequests struct {
	CPU        *float64 `json:"cpu,omitempty"`
	MemoryInGB *float64 `json:"memoryInGB,omitempty"`
}

// ResourceLimits are the enforced maximums.
type ResourceLimits struct {
	CPU        *float64 `json:"cpu,omitempty"`
	MemoryInGB *float64 `json:"memoryInGB,omitempty"`
}

// IPAddress is the group's address.
type IPAddress struct {
	Ports        []Port `json:"ports"`
	Type         string `json:"type,omitempty"`
	IP           string `json:"ip,omitempty"`
	DNSNameLabel string `json:"dnsNameLabel,omitempty"`
	FQDN         string `json:"fqdn,omitempty"`
}

// Port is a port the group exposes.
type Port struct {
	Port     *int32 `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// InstanceView is the group's observed state.
type InstanceView struct {
	State  string  `json:"state,omitempty"`
	Events []Event `json:"events"`
}

// ContainerInstanceView is a container's observed state.
type ContainerInstanceView struct {
	RestartCount  int32           `json:"restartCount"`
	CurrentState  *ContainerState `json:"currentState,omitempty"`
	PreviousState *ContainerState `json:"previousState,omitempty"`
	Events        []Event         `json:"events"`
}

// ContainerState is a container's state at one time. Times are RFC 3339.
type ContainerState struct {
	State        string `json:"state,omitempty"`
	StartTime    string `json:"startTime,omitempty"`
	ExitCode     *int32 `json:"exitCode,omitempty"`
	FinishTime   string `json:"finishTime,omitempty"`
	DetailStatus string `json:"detailStatus"`
}

// Event is an instance-view event.
type Event struct {
	Count          int32  `json:"count"`
	FirstTimestamp string `json:"firstTimestamp,omitempty"`
	LastTimestamp  string `json:"lastTimestamp,omitempty"`
	Name           string `json:"name"`
	Message        string `json:"message"`
	Type           string `json:"type"`
}

// ContainerGroupList is a page of a list response.
type ContainerGroupList struct {
	Value    []ContainerGroup `json:"value"`
	NextLink string           `json:"nextLink,omitempty"`
}

// Logs is the logs response.
type Logs struct {
	Content string `json:"content"`
}
