package daemon

import (
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/config"
)

// TestRunServer_RefusesBadKeyFile: a key file that is not 32 bytes of
// base64, or that others may read, stops the start with a clear error
// before the data dir is made. (issue 7)
func TestRunServer_RefusesBadKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{name: "readable by others", content: base64.StdEncoding.EncodeToString(make([]byte, 32)), mode: 0o644, want: "mode 0644"},
		{name: "16 bytes", content: base64.StdEncoding.EncodeToString(make([]byte, 16)), mode: 0o600, want: "want 32"},
		{name: "not base64", content: "***", mode: 0o600, want: "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "key")
			if err := os.WriteFile(keyFile, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyFile, tt.mode); err != nil {
				t.Fatal(err)
			}
			cfg := config.DefaultServer()
			cfg.DataDir = filepath.Join(dir, "data")
			cfg.EncryptionKeyFile = keyFile
			err := RunServer(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil || !strings.Contains(err.Error(), "encryption key file") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunServer = %v, want an encryption key file error with %q", err, tt.want)
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data dir was made before the key was checked: %v", err)
			}
		})
	}
}
