package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// dialTimeout bounds the first contact with etcd.
const dialTimeout = 5 * time.Second

// NewClient connects to etcd at endpoints, embedded or external, and
// returns once one of them has answered, so a wrong --etcd-endpoints fails
// at start-up rather than on the first request.
func NewClient(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("embedetcd: no etcd endpoints: %w", errdefs.ErrInvalidArgument)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		// The client retries transient failures and warns about each retry;
		// only errors are worth Berth's log.
		Logger: zap.New(newSlogCore(slog.Default().With("component", "etcd-client"), zapcore.ErrorLevel, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("embedetcd: connect to %s: %w", strings.Join(endpoints, ","), err)
	}

	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	// A linearizable read proves a reachable member and a leader. Like
	// `etcdctl endpoint health`, a permission error still proves both.
	_, err = c.Get(ctx, "health")
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		c.Close()
		return nil, fmt.Errorf("embedetcd: etcd at %s did not answer: %w: %w", strings.Join(endpoints, ","), errdefs.ErrUnavailable, err)
	}
	return c, nil
}
