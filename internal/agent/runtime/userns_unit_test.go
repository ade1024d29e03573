package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseUserNSRemap(t *testing.T) {
	tests := []struct {
		in      string
		want    *IDRange
		wantErr bool
	}{
		{"auto", nil, false},
		{"off", nil, false},
		{"100000:65536", &IDRange{100000, 65536}, false},
		{"1073741824:131072", &IDRange{1 << 30, 1 << 17}, false},
		{"4294901759:65536", &IDRange{4294901759, 65536}, false}, // ends at 4294967294
		{"4294901760:65536", nil, true},                          // would map 4294967295
		{"0:65536", nil, true},                                   // container root would be host root
		{"100000:65535", nil, true},                              // nobody (65534) still fits, but under the floor
		{"100000", nil, true},
		{"on", nil, true},
		{"", nil, true},
		{"-1:65536", nil, true},
		{"100000:65536:1", nil, true},
		{"0x10000:65536", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUserNSRemap(tt.in)
			if tt.wantErr {
				if err == nil || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("ParseUserNSRemap(%q) = %v, %v; want an invalid argument error", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Errorf("ParseUserNSRemap(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestResolveUserNS(t *testing.T) {
	dir := t.TempDir()
	sysctl := func(content string) string {
		p := filepath.Join(dir, content+".sysctl")
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	allowed, zero, missing := sysctl("96365"), sysctl("0"), filepath.Join(dir, "missing")
	explicit := IDRange{200000, 65536}
	tests := []struct {
		name      string
		setting   string
		isolation Isolation
		sysctl    string
		want      *IDRange
		wantErr   error
	}{
		{"auto where the kernel allows it", "auto", IsolationRunc, allowed, &DefaultRemapRange, nil},
		{"auto, sysctl at 0", "auto", IsolationRunc, zero, nil, nil},
		{"auto, kernel without user namespaces", "auto", IsolationRunc, missing, nil, nil},
		{"auto under gVisor", "auto", IsolationSandboxed, allowed, nil, nil},
		{"off", "off", IsolationRunc, allowed, nil, nil},
		{"unset is off", "", IsolationRunc, allowed, nil, nil},
		{"explicit range", "200000:65536", IsolationRunc, allowed, &explicit, nil},
		{"explicit range the kernel refuses", "200000:65536", IsolationRunc, zero, nil, errdefs.ErrFailedPrecondition},
		{"explicit range under gVisor", "200000:65536", IsolationSandboxed, zero, nil, nil},
		{"bad value", "yes", IsolationRunc, allowed, nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, err := resolveUserNS(tt.setting, tt.isolation, tt.sysctl)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, %q, %v; want %v", got, why, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if why == "" {
				t.Error("no reason given for the decision")
			}
			if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
				t.Errorf("got %v (%s), want %v", got, why, tt.want)
			}
		})
	}
}

func TestUserNSSpec(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	rng := &IDRange{1 << 30, 1 << 16}
	wantMap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1 << 30, Size: 1 << 16}}
	tests := []struct {
		name       string
		userns     *IDRange
		spec       ContainerSpec
		wantRemap  bool
		wantUserNS string // path of the user namespace joined; "new" for a new one
	}{
		{"no remap", nil, ContainerSpec{NetNSPath: "/n/g1", UserNSPath: "/u/g1"}, false, ""},
		{"group network in a user namespace", rng, ContainerSpec{NetNSPath: "/n/g1", UserNSPath: "/u/g1"}, true, "/u/g1"},
		{"no group network", rng, ContainerSpec{}, true, "new"},
		{"group network made before the remap", rng, ContainerSpec{NetNSPath: "/n/g1"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runtime{userns: tt.userns}
			if got := r.remaps(tt.spec); got != tt.wantRemap {
				t.Errorf("remaps = %v, want %v", got, tt.wantRemap)
			}
			s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c1"}, r.userNSSpec(ctx, tt.spec)...)
			if err != nil {
				t.Fatal(err)
			}
			var userns *specs.LinuxNamespace
			for i, ns := range s.Linux.Namespaces {
				if ns.Type == specs.UserNamespace {
					if userns != nil {
						t.Fatalf("two user namespaces: %+v", s.Linux.Namespaces)
					}
					userns = &s.Linux.Namespaces[i]
				}
			}
			switch {
			case tt.wantUserNS == "":
				if userns != nil || len(s.Linux.UIDMappings)+len(s.Linux.GIDMappings) > 0 {
					t.Errorf("user namespace %+v, mappings %v %v; want none", userns, s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
				return
			case userns == nil:
				t.Fatalf("no user namespace in %+v", s.Linux.Namespaces)
			case tt.wantUserNS == "new" && userns.Path != "", tt.wantUserNS != "new" && userns.Path != tt.wantUserNS:
				t.Errorf("user namespace %+v, want %s", userns, tt.wantUserNS)
			}
			if !equalMaps(s.Linux.UIDMappings, wantMap) || !equalMaps(s.Linux.GIDMappings, wantMap) {
				t.Errorf("mappings %v %v, want %v for both", s.Linux.UIDMappings, s.Linux.GIDMappings, wantMap)
			}
		})
	}
}

func equalMaps(a, b []specs.LinuxIDMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
