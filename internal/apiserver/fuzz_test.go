package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// FuzzPutGroupBody feeds arbitrary bodies to the PUT decoder and validator.
// It must never panic, and whatever it accepts must be a valid group: that
// is what the handler stores. make test runs it for a bounded time.
func FuzzPutGroupBody(f *testing.F) {
	f.Add([]byte(validGroup))
	f.Add([]byte(`{"location":"westus","properties":{"osType":"Linux","containers":[{"name":"a","properties":{"image":"i","resources":{"requests":{"cpu":0.1,"memoryInGB":0.1}}}}]}}`))
	f.Add([]byte(`{"location":"westus","properties":{"osType":"linux","restartPolicy":"never","initContainers":[{"name":"i","properties":{"image":"x","command":["a"]}}],"volumes":[{"name":"v","emptyDir":{}},{"name":"s","secret":{"f":"aGk="}}],"containers":[{"name":"a","properties":{"image":"i","volumeMounts":[{"name":"v","mountPath":"/v"}],"livenessProbe":{"exec":{"command":["true"]}},"resources":{"requests":{"cpu":1,"memoryInGB":1},"limits":{"cpu":2}}}}],"ipAddress":{"type":"Public","ports":[{"port":1,"protocol":"udp"}]}}}`))
	f.Add([]byte(`{"properties":{"containers":[{}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var w armv1.ContainerGroup
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&w); err != nil {
			return // the handler answers InvalidRequestContent
		}
		spec, err := specFromWire("fuzz-group", &w)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Code == "" || ae.Message == "" {
				t.Fatalf("refusal is not a 400 ARM error: %v", err)
			}
			return
		}
		if problem := invalid(&spec); problem != "" {
			t.Fatalf("accepted an invalid group (%s): %s", problem, body)
		}
	})
}

// invalid checks an accepted spec independently of the validator.
func invalid(s *types.GroupSpec) string {
	if s.OSType != "Linux" {
		return "os type " + s.OSType
	}
	switch s.RestartPolicy {
	case types.RestartAlways, types.RestartOnFailure, types.RestartNever:
	default:
		return "restart policy " + s.RestartPolicy
	}
	if len(s.Containers) == 0 || len(s.Containers) > maxContainers {
		return "container count"
	}
	names := map[string]bool{}
	volumes := map[string]bool{}
	for _, v := range s.Volumes {
		if v.Name == "" || volumes[v.Name] {
			return "volume name " + v.Name
		}
		volumes[v.Name] = true
	}
	var cpu, mem float64
	all := append(append([]types.Container{}, s.Containers...), s.InitContainers...)
	for i, c := range all {
		if names[c.Name] || !containerNamePattern.MatchString(c.Name) || len(c.Name) > 63 {
			return "container name " + c.Name
		}
		names[c.Name] = true
		if strings.TrimSpace(c.Image) == "" {
			return "empty image"
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] || !strings.HasPrefix(m.MountPath, "/") {
				return "volume mount " + m.Name
			}
		}
		if i >= len(s.Containers) {
			continue // init containers share the group's resources
		}
		r, l := c.Resources.Requests, c.Resources.Effective()
		if r.CPU <= 0 || r.MemoryGB <= 0 || l.CPU < r.CPU || l.MemoryGB < r.MemoryGB || l.CPU > maxCPU || l.MemoryGB > maxMemoryGB {
			return "resources of " + c.Name
		}
		cpu += r.CPU
		mem += r.MemoryGB
		for _, p := range c.Ports {
			if p.Port < 1 || p.Port > 65535 || (p.Protocol != "TCP" && p.Protocol != "UDP") {
				return "port"
			}
		}
	}
	if cpu > maxCPU || mem > maxMemoryGB {
		return "group resources"
	}
	if ip := s.IPAddress; ip != nil {
		if (ip.Type != "Public" && ip.Type != "Private") || len(ip.Ports) == 0 {
			return "ip address"
		}
	}
	return ""
}
