package sealing_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/sealing"
)

func newKey(t *testing.T) *sealing.Key {
	t.Helper()
	k, err := sealing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key, other := newKey(t), newKey(t)
	ad := []byte("groups/sub/rg/web")
	tests := []struct {
		name    string
		sealer  *sealing.Key // nil: a server without a key
		opener  *sealing.Key
		plain   []byte
		alter   func([]byte) []byte // applied to the stored form
		openAD  []byte              // default ad
		want    error               // errdefs class or ErrKeyUnavailable; nil: plain comes back
		wantRaw bool                // the stored form is plain itself
	}{
		{name: "a sealed value opens with its key", sealer: key, opener: key, plain: []byte("hunter2")},
		{name: "an empty value round-trips", sealer: key, opener: key, plain: []byte{}},
		{name: "binary content round-trips", sealer: key, opener: key, plain: []byte{0, 1, 2, 0xff, '\n'}},
		{name: "a value that looks sealed round-trips", sealer: key, opener: key, plain: []byte("berth:aesgcm:v1:deadbeef:AAAA")},
		{name: "without a key a value is stored plain", plain: []byte("hunter2"), wantRaw: true},
		{name: "a plain value opens with a key", opener: key, plain: []byte("hunter2"), wantRaw: true},
		{name: "without a key a value that looks sealed is escaped", plain: []byte("berth:aesgcm:v1:deadbeef:AAAA")},
		{name: "an escaped value opens with a key", opener: key, plain: []byte("berth:plain:x")},
		{name: "a sealed value needs a key", sealer: key, plain: []byte("hunter2"), want: sealing.ErrKeyUnavailable},
		{name: "a sealed value does not open with another key", sealer: key, opener: other, plain: []byte("hunter2"), want: sealing.ErrKeyUnavailable},
		{
			name: "an altered ciphertext is data loss", sealer: key, opener: key, plain: []byte("hunter2"),
			alter: func(b []byte) []byte {
				i := bytes.LastIndexByte(b, ':') + 1
				ct, _ := base64.StdEncoding.DecodeString(string(b[i:]))
				ct[len(ct)/2] ^= 1
				return append(b[:i:i], base64.StdEncoding.EncodeToString(ct)...)
			},
			want: errdefs.ErrDataLoss,
		},
		{
			name: "a truncated ciphertext is data loss", sealer: key, opener: key, plain: []byte("hunter2"),
			alter: func(b []byte) []byte { return b[:len(b)-8] },
			want:  errdefs.ErrDataLoss,
		},
		{name: "a value moved to another record is data loss", sealer: key, opener: key, plain: []byte("hunter2"), openAD: []byte("groups/sub/rg/other"), want: errdefs.ErrDataLoss},
		{
			name: "an unknown format version is data loss", sealer: key, opener: key, plain: []byte("hunter2"),
			alter: func(b []byte) []byte { return bytes.Replace(b, []byte(":v1:"), []byte(":v9:"), 1) },
			want:  errdefs.ErrDataLoss,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored := tt.sealer.Seal(tt.plain, ad)
			if tt.sealer != nil && bytes.Contains(stored, tt.plain) && len(tt.plain) > 0 {
				t.Errorf("sealed form %q holds the plain value", stored)
			}
			if tt.wantRaw && !bytes.Equal(stored, tt.plain) {
				t.Errorf("stored form %q, want the plain value", stored)
			}
			if tt.alter != nil {
				stored = tt.alter(bytes.Clone(stored))
			}
			openAD := ad
			if tt.openAD != nil {
				openAD = tt.openAD
			}
			got, err := tt.opener.Open(stored, openAD)
			if tt.want == nil {
				if err != nil || !bytes.Equal(got, tt.plain) {
					t.Errorf("Open(%q) = %q, %v; want %q", stored, got, err, tt.plain)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open(%q) = %q, %v; want %v", stored, got, err, tt.want)
			}
			if got != nil {
				t.Errorf("Open returned %q with its error", got)
			}
			if errors.Is(tt.want, sealing.ErrKeyUnavailable) {
				if !errdefs.IsFailedPrecondition(err) {
					t.Errorf("error %v is not a failed precondition", err)
				}
				if !strings.Contains(err.Error(), tt.sealer.ID()) || !strings.Contains(err.Error(), tt.opener.ID()) && tt.opener != nil {
					t.Errorf("error %q does not name the keys %s and %s", err, tt.sealer.ID(), tt.opener.ID())
				}
			}
		})
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	a, b := k.Seal([]byte("same"), nil), k.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same value are equal: %q", a)
	}
	if !strings.HasPrefix(string(a), "berth:aesgcm:v1:"+k.ID()+":") {
		t.Errorf("sealed form %q does not name format and key %s", a, k.ID())
	}
}

func TestLoadKeyFile(t *testing.T) {
	t.Parallel()
	raw := make([]byte, sealing.KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	good := base64.StdEncoding.EncodeToString(raw) + "\n"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		missing bool
		wantErr string // "" for success
	}{
		{name: "32 bytes of base64 with a newline load", content: good, mode: 0o600},
		{name: "an owner-only read-only file loads", content: good, mode: 0o400},
		{name: "a file others may read is refused", content: good, mode: 0o644, wantErr: "mode 0644"},
		{name: "a file its group may read is refused", content: good, mode: 0o640, wantErr: "chmod 600"},
		{name: "a key of 16 bytes is refused", content: base64.StdEncoding.EncodeToString(raw[:16]), mode: 0o600, wantErr: "key of 16 bytes, want 32"},
		{name: "a key that is not base64 is refused", content: "not base64!\n", mode: 0o600, wantErr: "base64"},
		{name: "an empty file is refused", content: "", mode: 0o600, wantErr: "key of 0 bytes"},
		{name: "a missing file is refused", missing: true, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			k, err := sealing.LoadKeyFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadKeyFile = %v, want an error containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(good)) {
					t.Errorf("error %q holds the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := sealing.NewKey(raw)
			if k.ID() != want.ID() {
				t.Errorf("loaded key %s, want %s", k.ID(), want.ID())
			}
			if got, err := want.Open(k.Seal([]byte("x"), nil), nil); err != nil || string(got) != "x" {
				t.Errorf("the loaded key is not the file's: %q, %v", got, err)
			}
		})
	}
}
