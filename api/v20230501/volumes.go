package v20230501

// Volume is a group volume; exactly one kind is set.
type Volume struct {
	Name      string            `json:"name"`
	AzureFile *AzureFileVolume  `json:"azureFile,omitempty"`
	EmptyDir  any               `json:"emptyDir,omitempty"`
	Secret    map[string]string `json:"secret,omitzero"` // {} in responses
	GitRepo   *GitRepoVolume    `json:"gitRepo,omitempty"`
}

// AzureFileVolume is an Azure Files share.
type AzureFileVolume struct {
	ShareName          string `json:"shareName"`
	ReadOnly           *bool  `json:"readOnly,omitempty"`
	StorageAccountName string `json:"storageAccountName"`
	StorageAccountKey  string `json:"storageAccountKey,omitempty"`
}

// GitRepoVolume clones a repository into the volume.
type GitRepoVolume struct {
	Directory  string `json:"directory,omitempty"`
	Repository string `json:"repository"`
	Revision   string `json:"revision,omitempty"`
}

// VolumeMount mounts a volume into a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  *bool  `json:"readOnly,omitempty"`
}

// ImageRegistryCredential authenticates image pulls; the password is
// write-only.
type ImageRegistryCredential struct {
	Server   string `json:"server"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Identity string `json:"identity,omitempty"`
}

// DNSConfig configures the containers' resolver.
type DNSConfig struct {
	NameServers   []string `json:"nameServers"`
	SearchDomains string   `json:"searchDomains,omitempty"`
	Options       string   `json:"options,omitempty"`
}

// ContainerProbe is a liveness or readiness probe.
type ContainerProbe struct {
	Exec                *ContainerExec    `json:"exec,omitempty"`
	HTTPGet             *ContainerHTTPGet `json:"httpGet,omitempty"`
	InitialDelaySeconds *int32            `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       *int32            `json:"periodSeconds,omitempty"`
	FailureThreshold    *int32            `json:"failureThreshold,omitempty"`
	SuccessThreshold    *int32            `json:"successThreshold,omitempty"`
	TimeoutSeconds      *int32            `json:"timeoutSeconds,omitempty"`
}

// ContainerExec is a probe command.
type ContainerExec struct {
	Command []string `json:"command,omitempty"`
}

// ContainerHTTPGet is an HTTP probe.
type ContainerHTTPGet struct {
	Port        *int32       `json:"port"`
	Path        string       `json:"path,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

// HTTPHeader is a header of an HTTP probe.
type HTTPHeader struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}
