package runtime

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRaiseKeyQuota(t *testing.T) {
	tests := []struct {
		name            string
		maxkeys, maxbyt string
		wantKeys        string
		wantBytes       string
		wantChanged     map[string]int64
		wantErr         bool
	}{
		{"kernel defaults are raised", "200\n", "20000\n", "1000000", "25000000",
			map[string]int64{"maxkeys": remapMaxKeys, "maxbytes": remapMaxBytes}, false},
		{"higher values are kept", "2000000\n", "30000000\n", "2000000", "30000000", map[string]int64{}, false},
		{"only the low one is raised", "2000000\n", "20000\n", "2000000", "25000000", map[string]int64{"maxbytes": remapMaxBytes}, false},
		{"garbage is an error", "lots\n", "20000\n", "lots", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name, v string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write("maxkeys", tt.maxkeys)
			write("maxbytes", tt.maxbyt)
			changed, err := raiseKeyQuota(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !maps.Equal(changed, tt.wantChanged) {
				t.Errorf("changed %v, want %v", changed, tt.wantChanged)
			}
			for name, want := range map[string]string{"maxkeys": tt.wantKeys, "maxbytes": tt.wantBytes} {
				b, _ := os.ReadFile(filepath.Join(dir, name))
				if got := strings.TrimSpace(string(b)); got != want {
					t.Errorf("%s = %q, want %s", name, got, want)
				}
			}
		})
	}
}
