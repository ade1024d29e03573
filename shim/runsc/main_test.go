package main

import (
	"strings"
	"testing"
)

func TestBareAddress(t *testing.T) {
	tests := []struct {
		name, reply, want, wantErr string
	}{
		{"JSON reply of containerd's shim package", `{"version":2,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`, "unix:///run/containerd/s/abc", ""},
		{"a bare address stays", "unix:///run/containerd/s/abc\n", "unix:///run/containerd/s/abc", ""},
		{"empty", "  ", "", "empty"},
		{"JSON without address", `{"version":2}`, "", "no address"},
		{"gRPC is not what containerd 1.6 dials", `{"version":2,"address":"unix:///x","protocol":"grpc"}`, "", "not ttrpc"},
		{"broken JSON", `{"version":`, "", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bareAddress([]byte(tt.reply))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("bareAddress = %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("bareAddress = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestIsStart(t *testing.T) {
	for args, want := range map[string]bool{
		"shim -namespace berth -address /c.sock -publish-binary /bin/containerd -id x start": true,
		"shim -namespace berth -address /c.sock -id x delete":                                false,
		"shim -namespace berth -address /c.sock -id x":                                       false,
		"shim": false,
	} {
		if got := isStart(strings.Fields(args)); got != want {
			t.Errorf("isStart(%q) = %v, want %v", args, got, want)
		}
	}
}
