package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error // nil: no class added
	}{
		{"no leader is unavailable", rpctypes.ErrNoLeader, errdefs.ErrUnavailable},
		{"a full database is resource exhausted", rpctypes.ErrNoSpace, errdefs.ErrResourceExhausted},
		{"a too large request is an invalid argument", rpctypes.ErrRequestTooLarge, errdefs.ErrInvalidArgument},
		{"a denied request is permission denied", rpctypes.ErrPermissionDenied, errdefs.ErrPermissionDenied},
		{"a gRPC unavailable status is unavailable", status.Error(codes.Unavailable, "connection refused"), errdefs.ErrUnavailable},
		{"a canceled context stays canceled", fmt.Errorf("x: %w", context.Canceled), context.Canceled},
		{"an unknown gRPC code gets no class", status.Error(codes.Internal, "boom"), nil},
		{"a plain error gets no class", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("classify lost the original error: %v", got)
			}
			if got.Error() != tt.err.Error() {
				t.Errorf("message = %q, want %q", got.Error(), tt.err.Error())
			}
			if tt.want != nil && !errors.Is(got, tt.want) {
				t.Errorf("classify(%v) is not %v", tt.err, tt.want)
			}
			if tt.want == nil && got != tt.err {
				t.Errorf("classify(%v) = %#v, want it unchanged", tt.err, got)
			}
		})
	}
}
