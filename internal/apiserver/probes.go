package apiserver

import (
	"fmt"
	"strings"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// probeFromWire validates a liveness or readiness probe. ACI's defaults
// (those of Kubernetes) fill what is left out.
func probeFromWire(group, container, kind string, p *armv1.ContainerProbe) (*types.Probe, error) {
	if p == nil {
		return nil, nil
	}
	bad := func(why string) error {
		return badRequest("InvalidProbe", fmt.Sprintf("The %s probe of container '%s' in container group '%s' is invalid: %s.", kind, container, group, why))
	}
	out := &types.Probe{PeriodSeconds: 10, FailureThreshold: 3, SuccessThreshold: 1, TimeoutSeconds: 1}
	switch {
	case p.Exec != nil && p.HTTPGet != nil:
		return nil, bad("it must have either exec or httpGet, not both")
	case p.Exec != nil:
		if len(p.Exec.Command) == 0 {
			return nil, bad("exec.command is empty")
		}
		out.Exec = p.Exec.Command
	case p.HTTPGet != nil:
		h := p.HTTPGet
		if h.Port == nil || *h.Port < 1 || *h.Port > 65535 {
			return nil, bad("httpGet.port must be in 1-65535")
		}
		scheme := strings.ToLower(h.Scheme)
		if scheme != "" && scheme != "http" && scheme != "https" {
			return nil, bad("httpGet.scheme must be http or https")
		}
		if scheme == "" {
			scheme = "http"
		}
		out.HTTPGet = &types.HTTPGet{Port: *h.Port, Path: h.Path, Scheme: scheme}
		for _, hd := range h.HTTPHeaders {
			if hd.Name == "" {
				return nil, bad("an httpGet header has no name")
			}
			out.HTTPGet.Headers = append(out.HTTPGet.Headers, types.HTTPHeader{Name: hd.Name, Value: hd.Value})
		}
	default:
		return nil, bad("it must have exec or httpGet")
	}
	for _, f := range []struct {
		name string
		in   *int32
		out  *int32
		min  int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds, &out.InitialDelaySeconds, 0},
		{"periodSeconds", p.PeriodSeconds, &out.PeriodSeconds, 1},
		{"failureThreshold", p.FailureThreshold, &out.FailureThreshold, 1},
		{"successThreshold", p.SuccessThreshold, &out.SuccessThreshold, 1},
		{"timeoutSeconds", p.TimeoutSeconds, &out.TimeoutSeconds, 1},
	} {
		if f.in == nil {
			continue
		}
		if *f.in < f.min {
			return nil, bad(fmt.Sprintf("%s must be at least %d", f.name, f.min))
		}
		*f.out = *f.in
	}
	return out, nil
}

func probeToWire(p *types.Probe) *armv1.ContainerProbe {
	if p == nil {
		return nil
	}
	out := &armv1.ContainerProbe{
		InitialDelaySeconds: ptr(p.InitialDelaySeconds),
		PeriodSeconds:       ptr(p.PeriodSeconds),
		FailureThreshold:    ptr(p.FailureThreshold),
		SuccessThreshold:    ptr(p.SuccessThreshold),
		TimeoutSeconds:      ptr(p.TimeoutSeconds),
	}
	if p.Exec != nil {
		out.Exec = &armv1.ContainerExec{Command: p.Exec}
	}
	if h := p.HTTPGet; h != nil {
		out.HTTPGet = &armv1.ContainerHTTPGet{Port: ptr(h.Port), Path: h.Path, Scheme: h.Scheme}
		for _, hd := range h.Headers {
			out.HTTPGet.HTTPHeaders = append(out.HTTPGet.HTTPHeaders, armv1.HTTPHeader{Name: hd.Name, Value: hd.Value})
		}
	}
	return out
}
