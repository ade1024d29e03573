package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/types"
)

func TestTailLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"zero returns everything", "a\nb\nc\n", 0, "a\nb\nc\n"},
		{"last line", "a\nb\nc\n", 1, "c\n"},
		{"last two lines", "a\nb\nc\n", 2, "b\nc\n"},
		{"more than there are", "a\nb\n", 5, "a\nb\n"},
		{"unterminated last line counts", "a\nb\nc", 2, "b\nc"},
		{"empty input", "", 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tailLines(tt.in, tt.n); got != tt.want {
				t.Errorf("tailLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	tests := []struct {
		name string
		in   *types.DNSConfig
		want string
	}{
		{"name servers only", &types.DNSConfig{NameServers: []string{"10.0.0.10", "2001:db8::1"}},
			"nameserver 10.0.0.10\nnameserver 2001:db8::1\n"},
		{"search and options, spaces normalised", &types.DNSConfig{NameServers: []string{"10.0.0.10"}, SearchDomains: " a.example   b.example ", Options: "ndots:2  timeout:1"},
			"nameserver 10.0.0.10\nsearch a.example b.example\noptions ndots:2 timeout:1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(resolvConf(tt.in)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if resolvConf(nil) != nil {
		t.Error("resolvConf(nil) is not nil: a group without dnsConfig must get the host's")
	}
}

func TestWithoutLoopbackServers(t *testing.T) {
	in := "# comment\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nsearch corp.example\noptions edns0\n"
	want := "# comment\nnameserver 10.1.2.3\nsearch corp.example\noptions edns0\n"
	if got := string(withoutLoopbackServers([]byte(in))); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestWriteGroupFiles_DNSConfig checks the file the containers get.
func TestWriteGroupFiles_DNSConfig(t *testing.T) {
	a := New(Options{Dir: t.TempDir()})
	g := &types.ContainerGroup{Name: "dns", UID: "0123456789abcdef", Spec: types.GroupSpec{
		DNSConfig: &types.DNSConfig{NameServers: []string{"10.9.8.7"}, SearchDomains: "svc.example", Options: "ndots:3"},
	}}
	if err := a.writeGroupFiles(g, network.Attachment{IP: "10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(a.groupDir(g.UID), "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "nameserver 10.9.8.7\nsearch svc.example\noptions ndots:3\n"; string(b) != want {
		t.Errorf("resolv.conf is %q, want %q", b, want)
	}
	g.Spec.DNSConfig = nil
	if err := a.writeGroupFiles(g, network.Attachment{IP: "10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(filepath.Join(a.groupDir(g.UID), "resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "10.9.8.7") {
		t.Errorf("without dnsConfig resolv.conf still names the old server: %q", b)
	}
}
