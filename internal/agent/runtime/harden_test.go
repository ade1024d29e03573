package runtime

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestHardening(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	tests := []struct {
		name      string
		before    []oci.SpecOpts
		pids      int64
		wantPids  int64
		forbidden string
	}{
		{"defaults", nil, 0, DefaultPidsLimit, "CAP_SYS_ADMIN"},
		{"capabilities an image or option added are dropped again", []oci.SpecOpts{oci.WithAddedCapabilities([]string{"CAP_SYS_ADMIN", "CAP_SYS_MODULE"})}, 0, DefaultPidsLimit, "CAP_SYS_MODULE"},
		{"privileges escalated before are taken back", []oci.SpecOpts{oci.WithAddedCapabilities([]string{"CAP_NET_ADMIN"}), oci.WithAmbientCapabilities([]string{"CAP_NET_ADMIN"})}, 64, 64, "CAP_NET_ADMIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append(slices.Clone(tt.before), hardening(tt.pids)...)
			s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c1"}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			caps := s.Process.Capabilities
			for _, set := range [][]string{caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient} {
				if slices.Contains(set, tt.forbidden) {
					t.Errorf("%s still granted: %+v", tt.forbidden, caps)
				}
			}
			if !slices.Equal(caps.Bounding, defaultCapabilities) {
				t.Errorf("bounding set %v, want Docker's default %v", caps.Bounding, defaultCapabilities)
			}
			if !s.Process.NoNewPrivileges {
				t.Error("no-new-privileges is off")
			}
			if s.Linux.Resources.Pids == nil || s.Linux.Resources.Pids.Limit != tt.wantPids {
				t.Errorf("pids limit %+v, want %d", s.Linux.Resources.Pids, tt.wantPids)
			}
			if sc := s.Linux.Seccomp; sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) == 0 {
				t.Errorf("seccomp: %+v, want the default profile (deny by default)", sc)
			}
			if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
				t.Errorf("masked %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		})
	}
}
