package daemon

import (
	"testing"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

func TestEnsureTenant(t *testing.T) {
	st := store.New(etcdtest.NewClient(t), "/tenant/")
	ctx := t.Context()
	if got, err := ensureTenant(ctx, st, "from-flag"); err != nil || got != "from-flag" {
		t.Fatalf("with --tenant-id: %q, %v; want from-flag", got, err)
	}
	first, err := ensureTenant(ctx, st, "")
	if err != nil || first == "" {
		t.Fatalf("first start: %q, %v; want a new id", first, err)
	}
	again, err := ensureTenant(ctx, st, "")
	if err != nil || again != first {
		t.Errorf("next start: %q, %v; want the stored %q", again, err, first)
	}
	// Another installation (its own etcd) makes its own tenant.
	other, err := ensureTenant(ctx, store.New(etcdtest.NewClient(t), "/tenant/"), "")
	if err != nil || other == first {
		t.Errorf("another installation: %q, %v; want an id other than %q", other, err, first)
	}
}

func TestIsSelf(t *testing.T) {
	tests := []struct {
		up, listen string
		want       bool
	}{
		{"127.0.0.1:53", "127.0.0.1:53", true},
		{"127.0.0.1:53", "0.0.0.0:53", true},
		{"127.0.0.1:53", ":53", true},
		{"127.0.0.1:5353", "127.0.0.1:53", false},
		{"10.0.0.2:53", "0.0.0.0:53", false},
		{"10.0.0.2:53", "127.0.0.1:53", false},
	}
	for _, tt := range tests {
		if got := isSelf(tt.up, tt.listen); got != tt.want {
			t.Errorf("isSelf(%q, %q) = %v, want %v", tt.up, tt.listen, got, tt.want)
		}
	}
}
