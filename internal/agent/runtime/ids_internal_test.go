package runtime

import (
	"strings"
	"testing"
)

func TestContainerID(t *testing.T) {
	const uid = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name      string
		isolation Isolation
		container string
		want      string
	}{
		{"under runc it is 12 digits of the uid and the name", IsolationRunc, "web", "0123456789ab-web"},
		{"under sandboxed isolation it is 10 digits, the name and _s", IsolationSandboxed, "web", "0123456789-web_s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runtime{opts: Options{Isolation: tt.isolation}}
			if got := r.ContainerID(uid, tt.container); got != tt.want {
				t.Errorf("ContainerID(%q, %q) = %q, want %q", uid, tt.container, got, tt.want)
			}
		})
	}
	t.Run("no sandboxed id of a group is a prefix of another", func(t *testing.T) {
		r := &Runtime{opts: Options{Isolation: IsolationSandboxed}}
		web, web2 := r.ContainerID(uid, "web"), r.ContainerID(uid, "web2")
		if strings.HasPrefix(web2, web) {
			t.Errorf("%q starts with %q: runsc would take one for the other", web2, web)
		}
	})
	t.Run("the longest name stays within containerd's 76 characters", func(t *testing.T) {
		name := strings.Repeat("n", 63) // ACI's longest container name
		for _, iso := range []Isolation{IsolationRunc, IsolationSandboxed} {
			r := &Runtime{opts: Options{Isolation: iso}}
			if id := r.ContainerID(uid, name); len(id) > 76 {
				t.Errorf("%s: %q has %d characters", iso, id, len(id))
			}
		}
	})
}
