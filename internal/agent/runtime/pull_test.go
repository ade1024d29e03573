package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

func TestNormalizeImage(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"nginx", "docker.io/library/nginx:latest"},
		{"nginx:1.27", "docker.io/library/nginx:1.27"},
		{"user/app", "docker.io/user/app:latest"},
		{"mcr.microsoft.com/azuredocs/aci-helloworld", "mcr.microsoft.com/azuredocs/aci-helloworld:latest"},
		{"127.0.0.1:5000/berth/busybox:1", "127.0.0.1:5000/berth/busybox:1"},
		{
			"busybox@sha256:1111111111111111111111111111111111111111111111111111111111111111",
			"docker.io/library/busybox@sha256:1111111111111111111111111111111111111111111111111111111111111111",
		},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s is %s", tt.in, tt.want), func(t *testing.T) {
			got, err := NormalizeImage(tt.in)
			if err != nil {
				t.Fatalf("NormalizeImage: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	for _, in := range []string{"", "Nginx", "a b", "x:"} {
		t.Run(fmt.Sprintf("%q is invalid", in), func(t *testing.T) {
			if _, err := NormalizeImage(in); !errdefs.IsInvalidArgument(err) {
				t.Errorf("got %v, want invalid argument", err)
			}
		})
	}
}

func TestSameRegistry(t *testing.T) {
	tests := []struct {
		server, host string
		want         bool
	}{
		{"myreg.azurecr.io", "myreg.azurecr.io", true},
		{"https://myreg.azurecr.io", "myreg.azurecr.io", true},
		{"127.0.0.1:5000", "127.0.0.1:5000", true},
		{"127.0.0.1:5000", "127.0.0.1:5001", false},
		{"https://index.docker.io/v1/", "registry-1.docker.io", true},
		{"docker.io", "registry-1.docker.io", true},
		{"docker.io", "quay.io", false},
		{"other.azurecr.io", "myreg.azurecr.io", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s for %s is %v", tt.server, tt.host, tt.want), func(t *testing.T) {
			if got := sameRegistry(tt.server, tt.host); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClassifyPullError(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("fetch: %w", remoteerrors.ErrUnexpectedStatus{StatusCode: code, Status: fmt.Sprint(code)})
	}
	tests := []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"a missing manifest stays not found", fmt.Errorf("x:1: %w", errdefs.ErrNotFound), errdefs.IsNotFound},
		{"a 404 is not found", status(404), errdefs.IsNotFound},
		{"a 401 is unauthenticated", status(401), errdefs.IsUnauthorized},
		{"failed authorization is unauthenticated", fmt.Errorf("pull access denied: %w", docker.ErrInvalidAuthorization), errdefs.IsUnauthorized},
		{"a 403 is permission denied", status(403), errdefs.IsPermissionDenied},
		{"a 429 is resource exhausted", status(429), errdefs.IsResourceExhausted},
		{"a 500 is unavailable", status(500), errdefs.IsUnavailable},
		{"a network error is unavailable", errors.New("dial tcp: connection refused"), errdefs.IsUnavailable},
		{"a canceled context stays canceled", fmt.Errorf("x: %w", context.Canceled), func(err error) bool { return errors.Is(err, context.Canceled) && !errdefs.IsUnavailable(err) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyPullError(tt.err)
			if !tt.is(got) {
				t.Errorf("got %v (%T), wrong class", got, got)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("got %v, which does not wrap the original error", got)
			}
		})
	}
}
