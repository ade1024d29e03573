// Package types is Berth's internal model: what the store holds and what
// the controllers and agents act on. It is independent of any API version;
// the API edge converts between wire models and these types.
package types

import "time"

// ResourceGroup is an ARM resource group: a named folder of resources in a
// subscription.
type ResourceGroup struct {
	Subscription string            `json:"subscription"`
	Name         string            `json:"name"`
	Location     string            `json:"location"`
	Tags         map[string]string `json:"tags,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
}

// ContainerGroup is the desired state of one container group, as a user
// declared it. The agent reports what it observed in a GroupStatus, stored
// under its own key so that API writes and agent writes never conflict.
type ContainerGroup struct {
	Subscription  string `json:"subscription"`
	ResourceGroup string `json:"resourceGroup"`
	Name          string `json:"name"`
	// UID identifies one incarnation of the group: a group deleted and
	// created again under the same name gets a new UID, so the agent never
	// confuses the new group's containers with the old one's.
	UID      string            `json:"uid"`
	Location string            `json:"location"`
	Tags     map[string]string `json:"tags,omitempty"`
	// Generation increases on every change of Spec; the agent reports the
	// generation it realised, which is how an operation knows it finished.
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	// Deleting is set when a delete was accepted; the agent tears the group
	// down and then removes it from the store.
	Deleting bool `json:"deleting,omitempty"`
	// Stopped is set by a stop: the agent kills the containers and frees
	// the group's node resources but keeps the group. A start clears it.
	Stopped bool `json:"stopped,omitempty"`
	// Restarts counts restart requests: the agent restarts every container
	// of the group in place when it changes.
	Restarts int64 `json:"restarts,omitempty"`
	// NodeName is the node the scheduler bound the group to; empty while
	// it waits for a place. A group moves only when the node controller
	// unbinds it (node lost, drained) or it is started again after a stop.
	NodeName string `json:"nodeName,omitempty"`
	// IP is the group's address, allocated for the whole cluster when the
	// group is first scheduled (an IPClaim holds it) and kept for its
	// life: across stop and start and on every node it moves to.
	IP   string    `json:"ip,omitempty"`
	Spec GroupSpec `json:"spec"`
}

// GroupSpec is what runs.
type GroupSpec struct {
	OSType        string      `json:"osType"`
	RestartPolicy string      `json:"restartPolicy"`
	SKU           string      `json:"sku,omitempty"`
	Containers    []Container `json:"containers"`
	// InitContainers run to completion, in order, before Containers start.
	InitContainers []Container          `json:"initContainers,omitempty"`
	IPAddress      *IPAddress           `json:"ipAddress,omitempty"`
	Volumes        []Volume             `json:"volumes,omitempty"`
	Registries     []RegistryCredential `json:"registries,omitempty"`
	DNSConfig      *DNSConfig           `json:"dnsConfig,omitempty"`
	// Subnet places the group in a virtual network subnet (subnetIds);
	// nil puts it on the node's public bridge.
	Subnet *SubnetRef `json:"subnet,omitempty"`
	// Zones are the availability zones the group may run in (ACI allows
	// at most one); empty means any.
	Zones []string `json:"zones,omitempty"`
}

// Volume is a group volume; exactly one kind is set.
type Volume struct {
	Name     string `json:"name"`
	EmptyDir bool   `json:"emptyDir,omitempty"`
	// Secret maps file names to their contents (decoded from base64).
	Secret  map[string][]byte `json:"secret,omitempty"`
	GitRepo *GitRepoVolume    `json:"gitRepo,omitempty"`
}

// GitRepoVolume is a git repository cloned into the volume.
type GitRepoVolume struct {
	Repository string `json:"repository"`
	Directory  string `json:"directory,omitempty"`
	Revision   string `json:"revision,omitempty"`
}

// VolumeMount mounts a group volume into a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// RegistryCredential authenticates pulls from one registry.
type RegistryCredential struct {
	Server   string `json:"server"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// DNSConfig becomes the containers' resolv.conf.
type DNSConfig struct {
	NameServers   []string `json:"nameServers"`
	SearchDomains string   `json:"searchDomains,omitempty"`
	Options       string   `json:"options,omitempty"`
}

// Probe checks a container: by running a command or by an HTTP GET.
type Probe struct {
	Exec                []string `json:"exec,omitempty"`
	HTTPGet             *HTTPGet `json:"httpGet,omitempty"`
	InitialDelaySeconds int32    `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32    `json:"periodSeconds,omitempty"`
	FailureThreshold    int32    `json:"failureThreshold,omitempty"`
	SuccessThreshold    int32    `json:"successThreshold,omitempty"`
	TimeoutSeconds      int32    `json:"timeoutSeconds,omitempty"`
}

// HTTPGet is an HTTP probe against the container's own address.
type HTTPGet struct {
	Port    int32        `json:"port"`
	Path    string       `json:"path,omitempty"`
	Scheme  string       `json:"scheme,omitempty"`
	Headers []HTTPHeader `json:"headers,omitempty"`
}

// HTTPHeader is one header of an HTTP probe.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Restart policies.
const (
	RestartAlways    = "Always"
	RestartOnFailure = "OnFailure"
	RestartNever     = "Never"
)

// Container is one container of a group.
type Container struct {
	Name      string    `json:"name"`
	Image     string    `json:"image"`
	Command   []string  `json:"command,omitempty"`
	Ports     []Port    `json:"ports,omitempty"`
	Env       []EnvVar  `json:"env,omitempty"`
	Resources Resources `json:"resources"`
	// VolumeMounts name volumes of the group.
	VolumeMounts   []VolumeMount `json:"volumeMounts,omitempty"`
	LivenessProbe  *Probe        `json:"livenessProbe,omitempty"`
	ReadinessProbe *Probe        `json:"readinessProbe,omitempty"`
}

// EnvVar is an environment variable. A secure one reaches the container but
// is never returned by the API.
type EnvVar struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secure bool   `json:"secure,omitempty"`
}

// Port is a port and protocol (TCP or UDP).
type Port struct {
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Resources holds requests (what is reserved and metered) and limits (what
// is enforced). Limits default to the requests.
type Resources struct {
	Requests ResourceList  `json:"requests"`
	Limits   *ResourceList `json:"limits,omitempty"`
}

// ResourceList is an amount of CPU cores, memory in GB and GPUs.
type ResourceList struct {
	CPU      float64     `json:"cpu"`
	MemoryGB float64     `json:"memoryInGB"`
	GPU      GPUResource `json:"gpu,omitzero"`
}

// GPUResource is a number of GPUs of one sku.
type GPUResource struct {
	Count int32  `json:"count,omitempty"`
	SKU   string `json:"sku,omitempty"`
}

// Effective returns the limits, which default to the requests.
func (r Resources) Effective() ResourceList {
	if r.Limits == nil {
		return r.Requests
	}
	l := *r.Limits
	if l.CPU == 0 {
		l.CPU = r.Requests.CPU
	}
	if l.MemoryGB == 0 {
		l.MemoryGB = r.Requests.MemoryGB
	}
	return l
}

// IPAddress is the group's address request.
type IPAddress struct {
	Type         string `json:"type"` // Public or Private
	Ports        []Port `json:"ports,omitempty"`
	DNSNameLabel string `json:"dnsNameLabel,omitempty"`
	// DNSNameLabelScope is the reuse policy that decides the FQDN (one of
	// the DNSScope constants); set whenever DNSNameLabel is.
	DNSNameLabelScope string `json:"dnsNameLabelScope,omitempty"`
	// FQDN is computed by the API when the label is set and kept, so that
	// a Noreuse name stays the same for the life of the group.
	FQDN string `json:"fqdn,omitempty"`
}

// DNS name label reuse policies (ACI's autoGeneratedDomainNameLabelScope).
const (
	DNSScopeUnsecure           = "Unsecure"
	DNSScopeTenantReuse        = "TenantReuse"
	DNSScopeSubscriptionReuse  = "SubscriptionReuse"
	DNSScopeResourceGroupReuse = "ResourceGroupReuse"
	DNSScopeNoreuse            = "Noreuse"
)

// DNSName is the claim on one FQDN, stored under PrefixDNSNames+fqdn: the
// group incarnation that holds it. A claim whose group incarnation no
// longer exists is stale and may be taken over.
type DNSName struct {
	FQDN     string `json:"fqdn"`
	GroupKey string `json:"groupKey"`
	GroupUID string `json:"groupUID"`
}

// Requests is what the group reserves on its node: the sum of its main
// containers' requests (init containers run before them, within the same
// reservation, as ACI counts them).
func (s *GroupSpec) Requests() ResourceList {
	var total ResourceList
	for _, c := range s.Containers {
		total.CPU += c.Resources.Requests.CPU
		total.MemoryGB += c.Resources.Requests.MemoryGB
		if g := c.Resources.Requests.GPU; g.Count > 0 {
			total.GPU.Count += g.Count
			total.GPU.SKU = g.SKU
		}
	}
	return total
}

// Limits is the sum of the main containers' effective limits: what a
// sandbox holding the whole group, or an init container, may use.
func (s *GroupSpec) Limits() ResourceList {
	var total ResourceList
	for _, c := range s.Containers {
		l := c.Resources.Effective()
		total.CPU += l.CPU
		total.MemoryGB += l.MemoryGB
	}
	return total
}

// Key returns the group's store key suffix: subscription/resourcegroup/name,
// lower-cased because ARM names are case-insensitive.
func (g *ContainerGroup) Key() string {
	return GroupKey(g.Subscription, g.ResourceGroup, g.Name)
}
