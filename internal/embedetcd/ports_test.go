package embedetcd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/containerd/errdefs"
)

func TestResolvePorts(t *testing.T) {
	local := regexp.MustCompile(`^http://127\.0\.0\.1:[1-9][0-9]*$`)
	tests := []struct {
		name      string
		stored    string // ports.json content; empty: no file
		client    string
		peer      string
		want      ports // empty fields: any free local port
		wantClass func(error) bool
	}{
		{
			name: "without a file it picks free local ports",
		},
		{
			name:   "it reuses the remembered ports",
			stored: `{"clientURL":"http://127.0.0.1:2379","peerURL":"http://127.0.0.1:2380"}`,
			want:   ports{ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380"},
		},
		{
			name:   "configured URLs win over remembered ones",
			stored: `{"clientURL":"http://127.0.0.1:2379","peerURL":"http://127.0.0.1:2380"}`,
			client: "http://127.0.0.1:3379",
			want:   ports{ClientURL: "http://127.0.0.1:3379", PeerURL: "http://127.0.0.1:2380"},
		},
		{
			name:   "a configured client URL gets a free peer port",
			client: "http://127.0.0.1:3379",
			want:   ports{ClientURL: "http://127.0.0.1:3379"},
		},
		{
			name:      "a damaged file is data loss",
			stored:    `{"clientURL":`,
			wantClass: errdefs.IsDataLoss,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, portsFile)
			if tt.stored != "" {
				if err := os.WriteFile(path, []byte(tt.stored), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := resolvePorts(dir, Config{ClientURL: tt.client, PeerURL: tt.peer})
			if tt.wantClass != nil {
				if !tt.wantClass(err) {
					t.Fatalf("resolvePorts error = %v, want another class", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolvePorts: %v", err)
			}
			for _, c := range []struct{ got, want string }{{got.ClientURL, tt.want.ClientURL}, {got.PeerURL, tt.want.PeerURL}} {
				if c.want != "" && c.got != c.want {
					t.Errorf("got %q, want %q", c.got, c.want)
				}
				if c.want == "" && !local.MatchString(c.got) {
					t.Errorf("got %q, want a free port on 127.0.0.1", c.got)
				}
			}
			if got.ClientURL == got.PeerURL {
				t.Errorf("client and peer share %q", got.ClientURL)
			}

			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("ports are not remembered: %v", err)
			}
			var stored ports
			if err := json.Unmarshal(b, &stored); err != nil {
				t.Fatalf("remembered ports: %v", err)
			}
			if stored != got {
				t.Errorf("remembered %+v, want %+v", stored, got)
			}
			again, err := resolvePorts(dir, Config{})
			if err != nil {
				t.Fatalf("resolvePorts again: %v", err)
			}
			if again != got {
				t.Errorf("second resolve gave %+v, want %+v", again, got)
			}
		})
	}
}
