package apiserver

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// ACI's naming rules (aci-api.md, section 2).
var (
	groupNamePattern     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	containerNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envNamePattern       = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

// Limits of one container group on Berth, reported by ACI as capabilities.
const (
	maxContainers = 60
	maxCPU        = 4.0
	maxMemoryGB   = 16.0
)

func groupID(sub, rg, name string) string {
	return resourceGroupID(sub, rg) + "/providers/Microsoft.ContainerInstance/containerGroups/" + name
}

func validateGroupName(name string) error {
	if len(name) > 63 || !groupNamePattern.MatchString(name) || strings.Contains(name, "--") {
		return badRequest("InvalidContainerGroupName",
			fmt.Sprintf("The container group name '%s' is invalid. The name must be 1 to 63 characters long, contain only lowercase letters, numbers and hyphens, start and end with a letter or number, and not contain '--'.", name))
	}
	return nil
}

// specFromWire validates a PUT body and converts it to the internal model.
// It reports the first problem as an ARM error that names the field.
func specFromWire(group string, w *armv1.ContainerGroup) (types.GroupSpec, error) {
	var spec types.GroupSpec
	if strings.TrimSpace(w.Location) == "" {
		return spec, badRequest("LocationRequired", "The location property is required for this definition.")
	}
	p := w.Properties
	if p == nil {
		return spec, badRequest("MissingRequiredProperty", "The request content is missing the required 'properties' object.")
	}
	for _, z := range w.Zones {
		if z = strings.TrimSpace(z); z == "" || len(z) > 32 {
			return spec, badRequest("InvalidAvailabilityZone",
				fmt.Sprintf("The availability zone '%s' of container group '%s' is invalid: want a zone name such as '1'.", z, group))
		}
		if !slices.Contains(spec.Zones, z) {
			spec.Zones = append(spec.Zones, z)
		}
	}
	switch strings.ToLower(p.OSType) {
	case "linux":
		spec.OSType = "Linux"
	case "windows":
		return spec, badRequest("UnsupportedOsType",
			fmt.Sprintf("The 'osType' 'Windows' of container group '%s' is not supported: Berth runs Linux containers only.", group))
	default:
		os := p.OSType
		if os == "" {
			os = "<null>"
		}
		return spec, badRequest("InvalidOsType",
			fmt.Sprintf("The 'osType' '%s' for container group '%s' is invalid. The value must be one of 'Windows,Linux'.", os, group))
	}
	switch strings.ToLower(p.RestartPolicy) {
	case "", "always":
		spec.RestartPolicy = types.RestartAlways
	case "onfailure":
		spec.RestartPolicy = types.RestartOnFailure
	case "never":
		spec.RestartPolicy = types.RestartNever
	default:
		return spec, badRequest("InvalidRestartPolicy",
			fmt.Sprintf("The restart policy '%s' of container group '%s' is invalid. The value must be one of 'Always,OnFailure,Never'.", p.RestartPolicy, group))
	}
	switch strings.ToLower(p.SKU) {
	case "", "standard":
		spec.SKU = "Standard"
	default:
		return spec, badRequest("InvalidSku",
			fmt.Sprintf("The sku '%s' of container group '%s' is not supported. The value must be 'Standard'.", p.SKU, group))
	}
	var err error
	if spec.Volumes, err = volumesFromWire(group, p.Volumes); err != nil {
		return spec, err
	}
	if spec.Registries, err = registriesFromWire(group, p.ImageRegistryCredentials); err != nil {
		return spec, err
	}
	if spec.DNSConfig, err = dnsConfigFromWire(group, p.DNSConfig); err != nil {
		return spec, err
	}
	if len(p.Containers) == 0 {
		return spec, badRequest("NoContainersInContainerGroup",
			fmt.Sprintf("The container group '%s' must have at least one container.", group))
	}
	if len(p.Containers) > maxContainers {
		return spec, badRequest("TooManyContainers",
			fmt.Sprintf("The container group '%s' has %d containers; at most %d are allowed.", group, len(p.Containers), maxContainers))
	}
	seen := map[string]bool{}
	declared := map[string]bool{}
	for _, wc := range p.Containers {
		c, err := containerFromWire(group, &wc, spec.Volumes)
		if err != nil {
			return spec, err
		}
		if seen[c.Name] {
			return spec, badRequest("DuplicateContainerName",
				fmt.Sprintf("The container name '%s' is used more than once in container group '%s'.", c.Name, group))
		}
		seen[c.Name] = true
		for _, port := range c.Ports {
			declared[fmt.Sprintf("%d/%s", port.Port, port.Protocol)] = true
		}
		spec.Containers = append(spec.Containers, c)
	}
	for _, wc := range p.InitContainers {
		c, err := initContainerFromWire(group, &wc, spec.Volumes)
		if err != nil {
			return spec, err
		}
		if seen[c.Name] {
			return spec, badRequest("DuplicateContainerName",
				fmt.Sprintf("The container name '%s' is used more than once in container group '%s'.", c.Name, group))
		}
		seen[c.Name] = true
		spec.InitContainers = append(spec.InitContainers, c)
	}
	var total types.ResourceList
	for _, c := range spec.Containers {
		total.CPU += c.Resources.Requests.CPU
		total.MemoryGB += c.Resources.Requests.MemoryGB
	}
	if total.CPU > maxCPU || total.MemoryGB > maxMemoryGB {
		return spec, badRequest("ContainerGroupResourcesExceeded",
			fmt.Sprintf("The container group '%s' requests %g CPU and %g GB in total; a group may request at most %g CPU and %g GB.",
				group, total.CPU, total.MemoryGB, maxCPU, maxMemoryGB))
	}
	if ip := p.IPAddress; ip != nil {
		a := &types.IPAddress{}
		switch strings.ToLower(ip.Type) {
		case "public":
			a.Type = "Public"
		case "private":
			a.Type = "Private"
		default:
			return spec, badRequest("InvalidIpAddressType",
				fmt.Sprintf("The IP address type '%s' of container group '%s' is invalid. The value must be one of 'Public,Private'.", ip.Type, group))
		}
		if len(ip.Ports) == 0 {
			return spec, badRequest("InvalidIpAddressPorts",
				fmt.Sprintf("The IP address of container group '%s' must declare at least one port.", group))
		}
		for _, wp := range ip.Ports {
			port, err := portFromWire(wp.Port, wp.Protocol, "ipAddress.ports")
			if err != nil {
				return spec, err
			}
			if !declared[fmt.Sprintf("%d/%s", port.Port, port.Protocol)] {
				return spec, badRequest("InvalidIpAddressPorts",
					fmt.Sprintf("The port '%d' (%s) of the IP address of container group '%s' is not exposed by any of its containers.", port.Port, port.Protocol, group))
			}
			a.Ports = append(a.Ports, port)
		}
		if err := dnsLabelFromWire(group, ip, a); err != nil {
			return spec, err
		}
		spec.IPAddress = a
	}
	return spec, nil
}

func containerFromWire(group string, wc *armv1.Container, volumes []types.Volume) (types.Container, error) {
	c := types.Container{Name: wc.Name}
	if len(wc.Name) > 63 || !containerNamePattern.MatchString(wc.Name) {
		return c, badRequest("InvalidContainerName",
			fmt.Sprintf("The container name '%s' in container group '%s' is invalid. The container name must contain no more than 63 characters and must match the regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').", wc.Name, group))
	}
	p := wc.Properties
	if p == nil || strings.TrimSpace(p.Image) == "" {
		return c, badRequest("InvalidContainerImage",
			fmt.Sprintf("The image of container '%s' in container group '%s' is missing.", wc.Name, group))
	}
	c.Image = strings.TrimSpace(p.Image)
	c.Command = p.Command
	dup := map[types.Port]bool{}
	for _, wp := range p.Ports {
		port, err := portFromWire(wp.Port, wp.Protocol, "containers.ports")
		if err != nil {
			return c, err
		}
		if dup[port] {
			return c, badRequest("DuplicatePort", fmt.Sprintf("The port '%d' (%s) is declared more than once by container '%s' in container group '%s'.", port.Port, port.Protocol, wc.Name, group))
		}
		dup[port] = true
		c.Ports = append(c.Ports, port)
	}
	for _, e := range p.EnvironmentVariables {
		if !envNamePattern.MatchString(e.Name) {
			return c, badRequest("InvalidEnvironmentVariable",
				fmt.Sprintf("The environment variable name '%s' of container '%s' in container group '%s' is invalid.", e.Name, wc.Name, group))
		}
		if e.Value != nil && e.SecureValue != nil {
			return c, badRequest("InvalidEnvironmentVariable",
				fmt.Sprintf("The environment variable '%s' of container '%s' in container group '%s' must have either a value or a secure value, not both.", e.Name, wc.Name, group))
		}
		v := types.EnvVar{Name: e.Name}
		switch {
		case e.SecureValue != nil:
			v.Value, v.Secure = *e.SecureValue, true
		case e.Value != nil:
			v.Value = *e.Value
		}
		c.Env = append(c.Env, v)
	}
	res, err := resourcesFromWire(group, wc.Name, p.Resources)
	if err != nil {
		return c, err
	}
	c.Resources = res
	if c.VolumeMounts, err = volumeMountsFromWire(group, wc.Name, p.VolumeMounts, volumes); err != nil {
		return c, err
	}
	if c.LivenessProbe, err = probeFromWire(group, wc.Name, "liveness", p.LivenessProbe); err != nil {
		return c, err
	}
	if c.ReadinessProbe, err = probeFromWire(group, wc.Name, "readiness", p.ReadinessProbe); err != nil {
		return c, err
	}
	return c, nil
}

// initContainerFromWire converts an init container: image, command,
// environment and volume mounts only; it shares the group's resources.
func initContainerFromWire(group string, wc *armv1.Container, volumes []types.Volume) (types.Container, error) {
	if wc.Properties != nil {
		p := *wc.Properties
		if p.Ports != nil || p.LivenessProbe != nil || p.ReadinessProbe != nil {
			return types.Container{}, badRequest("InvalidInitContainer",
				fmt.Sprintf("The init container '%s' in container group '%s' cannot have ports or probes.", wc.Name, group))
		}
		// Resources of init containers are ignored, as in ACI: they run
		// within the group's.
		p.Resources = &armv1.ResourceRequirements{Requests: &armv1.ResourceRequests{CPU: ptr(1.0), MemoryInGB: ptr(1.0)}}
		wc = &armv1.Container{Name: wc.Name, Properties: &p}
	}
	c, err := containerFromWire(group, wc, volumes)
	c.Resources = types.Resources{}
	return c, err
}

func resourcesFromWire(group, container string, r *armv1.ResourceRequirements) (types.Resources, error) {
	var out types.Resources
	if r == nil || r.Requests == nil || r.Requests.CPU == nil || r.Requests.MemoryInGB == nil {
		return out, badRequest("InvalidContainerResources",
			fmt.Sprintf("The resource requests (cpu and memoryInGB) of container '%s' in container group '%s' are required.", container, group))
	}
	out.Requests = types.ResourceList{CPU: *r.Requests.CPU, MemoryGB: *r.Requests.MemoryInGB}
	if err := checkAmount(group, container, "request", out.Requests); err != nil {
		return out, err
	}
	if l := r.Limits; l != nil {
		lim := types.ResourceList{}
		if l.CPU != nil {
			lim.CPU = *l.CPU
		}
		if l.MemoryInGB != nil {
			lim.MemoryGB = *l.MemoryInGB
		}
		out.Limits = &lim
		eff := out.Effective()
		if err := checkAmount(group, container, "limit", eff); err != nil {
			return out, err
		}
		if eff.CPU < out.Requests.CPU || eff.MemoryGB < out.Requests.MemoryGB {
			return out, badRequest("InvalidContainerResources",
				fmt.Sprintf("The resource limits of container '%s' in container group '%s' must not be lower than its requests.", container, group))
		}
	}
	return out, nil
}

func checkAmount(group, container, what string, l types.ResourceList) error {
	if l.CPU <= 0 || l.CPU > maxCPU || l.MemoryGB <= 0 || l.MemoryGB > maxMemoryGB {
		return badRequest("InvalidContainerResources",
			fmt.Sprintf("The resource %s of container '%s' in container group '%s' is invalid: cpu must be in (0, %g] cores and memoryInGB in (0, %g].",
				what, container, group, maxCPU, maxMemoryGB))
	}
	return nil
}

func portFromWire(port *int32, protocol, field string) (types.Port, error) {
	if port == nil || *port < 1 || *port > 65535 {
		return types.Port{}, badRequest("InvalidPort", fmt.Sprintf("A port in '%s' is missing or outside 1-65535.", field))
	}
	p := types.Port{Port: *port}
	switch strings.ToUpper(protocol) {
	case "", "TCP":
		p.Protocol = "TCP"
	case "UDP":
		p.Protocol = "UDP"
	default:
		return p, badRequest("InvalidPortProtocol", fmt.Sprintf("The protocol '%s' in '%s' is invalid. The value must be one of 'TCP,UDP'.", protocol, field))
	}
	return p, nil
}

// groupToWire renders a group for a response. Secure values never leave
// the server; instance views are left out of list responses, as ACI does.
func groupToWire(g *types.ContainerGroup, st *types.GroupStatus, withInstanceView bool) armv1.ContainerGroup {
	if st != nil && st.UID != g.UID {
		st = nil
	}
	props := &armv1.ContainerGroupProperties{
		ProvisioningState: provisioningState(g, st),
		OSType:            g.Spec.OSType,
		RestartPolicy:     g.Spec.RestartPolicy,
		SKU:               g.Spec.SKU,
		InitContainers:    []armv1.Container{},
	}
	for _, c := range g.Spec.Containers {
		props.Containers = append(props.Containers, containerToWire(&c, st, withInstanceView))
	}
	for _, c := range g.Spec.InitContainers {
		w := containerToWire(&c, st, withInstanceView)
		w.Properties.Resources = nil
		props.InitContainers = append(props.InitContainers, w)
	}
	props.Volumes = volumesToWire(g.Spec.Volumes)
	props.ImageRegistryCredentials = registriesToWire(g.Spec.Registries)
	props.DNSConfig = dnsConfigToWire(g.Spec.DNSConfig)
	if sn := g.Spec.Subnet; sn != nil {
		props.SubnetIDs = []armv1.SubnetID{{ID: sn.ID}}
	}
	if ip := g.Spec.IPAddress; ip != nil {
		w := &armv1.IPAddress{Type: ip.Type, DNSNameLabel: ip.DNSNameLabel, AutoGeneratedDomainNameLabelScope: ip.DNSNameLabelScope, FQDN: ip.FQDN}
		for _, p := range ip.Ports {
			w.Ports = append(w.Ports, armv1.Port{Port: ptr(p.Port), Protocol: p.Protocol})
		}
		if st != nil {
			w.IP = st.IP
		}
		props.IPAddress = w
	}
	if withInstanceView {
		iv := &armv1.InstanceView{State: types.GroupPending, Events: []armv1.Event{}}
		if st != nil {
			if st.State != "" {
				iv.State = st.State
			}
			iv.Events = eventsToWire(st.Events)
		}
		props.InstanceView = iv
	}
	tags := g.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return armv1.ContainerGroup{
		ID:         groupID(g.Subscription, g.ResourceGroup, g.Name),
		Name:       g.Name,
		Type:       armv1.ResourceType,
		Location:   g.Location,
		Zones:      g.Spec.Zones,
		Tags:       tags,
		Properties: props,
	}
}

func containerToWire(c *types.Container, st *types.GroupStatus, withInstanceView bool) armv1.Container {
	p := &armv1.ContainerProperties{
		Image:                c.Image,
		Command:              c.Command,
		EnvironmentVariables: []armv1.EnvironmentVariable{},
		Resources: &armv1.ResourceRequirements{
			Requests: &armv1.ResourceRequests{CPU: ptr(c.Resources.Requests.CPU), MemoryInGB: ptr(c.Resources.Requests.MemoryGB)},
		},
	}
	if l := c.Resources.Limits; l != nil {
		p.Resources.Limits = &armv1.ResourceLimits{}
		if l.CPU != 0 {
			p.Resources.Limits.CPU = ptr(l.CPU)
		}
		if l.MemoryGB != 0 {
			p.Resources.Limits.MemoryInGB = ptr(l.MemoryGB)
		}
	}
	for _, port := range c.Ports {
		p.Ports = append(p.Ports, armv1.ContainerPort{Port: ptr(port.Port), Protocol: port.Protocol})
	}
	p.VolumeMounts = volumeMountsToWire(c.VolumeMounts)
	p.LivenessProbe = probeToWire(c.LivenessProbe)
	p.ReadinessProbe = probeToWire(c.ReadinessProbe)
	for _, e := range c.Env {
		w := armv1.EnvironmentVariable{Name: e.Name}
		if !e.Secure {
			w.Value = ptr(e.Value)
		}
		p.EnvironmentVariables = append(p.EnvironmentVariables, w)
	}
	if withInstanceView {
		iv := &armv1.ContainerInstanceView{Events: []armv1.Event{}}
		if cs := statusOf(st, c.Name); cs != nil {
			iv.RestartCount = cs.RestartCount
			iv.CurrentState = stateToWire(&cs.Current)
			// ACI's model has no readiness field; a container with a
			// readiness probe reports it as the running state's detail.
			if c.ReadinessProbe != nil && cs.Current.State == types.ContainerRunning {
				iv.CurrentState.DetailStatus = "NotReady"
				if cs.Ready {
					iv.CurrentState.DetailStatus = "Ready"
				}
			}
			if cs.Previous != nil {
				iv.PreviousState = stateToWire(cs.Previous)
			}
			iv.Events = eventsToWire(cs.Events)
		} else {
			iv.CurrentState = &armv1.ContainerState{State: types.ContainerWaiting}
		}
		p.InstanceView = iv
	}
	return armv1.Container{Name: c.Name, Properties: p}
}

func statusOf(st *types.GroupStatus, name string) *types.ContainerStatus {
	if st == nil {
		return nil
	}
	return st.Container(name)
}

func stateToWire(s *types.ContainerState) *armv1.ContainerState {
	return &armv1.ContainerState{
		State:        s.State,
		StartTime:    formatTime(s.StartTime),
		FinishTime:   formatTime(s.FinishTime),
		ExitCode:     s.ExitCode,
		DetailStatus: s.DetailStatus,
	}
}

func eventsToWire(events []types.Event) []armv1.Event {
	out := make([]armv1.Event, 0, len(events))
	for _, e := range events {
		out = append(out, armv1.Event{
			Count: e.Count, FirstTimestamp: formatTime(e.FirstTimestamp), LastTimestamp: formatTime(e.LastTimestamp),
			Name: e.Name, Message: e.Message, Type: e.Type,
		})
	}
	return out
}

// provisioningState is what ARM reports: Pending until the agent realised
// the current generation, then the agent's verdict.
func provisioningState(g *types.ContainerGroup, st *types.GroupStatus) string {
	switch {
	case g.Deleting:
		return types.ProvisioningDeleting
	case st == nil || st.ObservedGeneration < g.Generation || st.ProvisioningState == "":
		return types.ProvisioningPending
	default:
		return st.ProvisioningState
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func ptr[T any](v T) *T { return &v }
