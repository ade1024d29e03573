package store

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classify adds an errdefs class to an error from etcd, so the API can
// answer 503 when etcd has no leader and 400 when a value is too large,
// without knowing about gRPC. Context errors are already classes.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var code codes.Code
	// etcd's server errors (rpctypes.EtcdError) carry a gRPC code; other
	// errors from the client are gRPC status errors.
	var coded interface{ Code() codes.Code }
	if errors.As(err, &coded) {
		code = coded.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	} else {
		return err
	}
	var class error
	switch code {
	case codes.Unavailable:
		class = errdefs.ErrUnavailable
	case codes.ResourceExhausted:
		class = errdefs.ErrResourceExhausted
	case codes.InvalidArgument:
		class = errdefs.ErrInvalidArgument
	case codes.FailedPrecondition:
		class = errdefs.ErrFailedPrecondition
	case codes.PermissionDenied:
		class = errdefs.ErrPermissionDenied
	case codes.Unauthenticated:
		class = errdefs.ErrUnauthenticated
	case codes.OutOfRange:
		class = errdefs.ErrOutOfRange
	case codes.DeadlineExceeded:
		class = context.DeadlineExceeded
	case codes.Canceled:
		class = context.Canceled
	default:
		return err
	}
	return classified{class: class, err: err}
}

// classified keeps etcd's message and adds a class that errors.Is finds.
type classified struct {
	class error
	err   error
}

func (c classified) Error() string   { return c.err.Error() }
func (c classified) Unwrap() []error { return []error{c.class, c.err} }
