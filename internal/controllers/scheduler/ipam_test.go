package scheduler

import (
	"net/netip"
	"testing"
)

func TestNextFree(t *testing.T) {
	p := netip.MustParsePrefix("10.1.0.0/29") // .0 network, .1 gateway, .7 broadcast: .2-.6 usable
	set := func(ips ...string) func(netip.Addr) bool {
		m := map[netip.Addr]bool{}
		for _, s := range ips {
			m[netip.MustParseAddr(s)] = true
		}
		return func(a netip.Addr) bool { return m[a] }
	}
	tests := []struct {
		name  string
		from  string
		taken []string
		want  string // "" when full
	}{
		{name: "the first address after the gateway comes first", want: "10.1.0.2"},
		{name: "the search starts after the last address handed out", from: "10.1.0.3", want: "10.1.0.4"},
		{name: "taken addresses are skipped", from: "10.1.0.3", taken: []string{"10.1.0.4", "10.1.0.5"}, want: "10.1.0.6"},
		{name: "the search wraps around before the broadcast address", from: "10.1.0.6", taken: []string{"10.1.0.2"}, want: "10.1.0.3"},
		{name: "a full subnet has no address", taken: []string{"10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"}},
		{name: "a cursor outside the subnet is ignored", from: "192.168.0.9", want: "10.1.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var from netip.Addr
			if tt.from != "" {
				from = netip.MustParseAddr(tt.from)
			}
			got, ok := nextFree(p, from, set(tt.taken...))
			if tt.want == "" {
				if ok {
					t.Fatalf("got %v, want none", got)
				}
				return
			}
			if !ok || got.String() != tt.want {
				t.Fatalf("got %v (%v), want %s", got, ok, tt.want)
			}
		})
	}
	if got, ok := nextFree(netip.MustParsePrefix("10.88.0.0/16"), netip.Addr{}, set()); !ok || got.String() != "10.88.0.2" {
		t.Fatalf("/16: got %v", got)
	}
}
