package runtime

import "testing"

func TestParseAddrs(t *testing.T) {
	tests := []struct{ name, out, want string }{
		{"IPv4 and IPv6 of eth0", "2: eth0    inet 10.88.0.2/16 brd 10.88.255.255 scope global eth0\\       valid_lft forever preferred_lft forever\n2: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever preferred_lft forever\n",
			"eth0 10.88.0.2/16\neth0 fd00::2/64"},
		{"a veth's peer suffix is dropped", "3: eth0@if12    inet 10.1.2.3/24 scope global eth0\n", "eth0 10.1.2.3/24"},
		{"nothing", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseAddrs(tt.out); got != tt.want {
				t.Errorf("parseAddrs = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	out := "default via 10.88.0.1 dev eth0 \n10.88.0.0/16 dev eth0 proto kernel scope link src 10.88.0.2 \n10.99.0.0/16 via 10.88.0.1 dev eth0\n"
	want := "default via 10.88.0.1 dev eth0\n10.99.0.0/16 via 10.88.0.1 dev eth0"
	if got := parseRoutes(out); got != want {
		t.Errorf("parseRoutes = %q, want %q", got, want)
	}
}
