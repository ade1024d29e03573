// Package log carries a *slog.Logger in a context, as containerd's log.G
// does: a request or a reconcile pass adds its id once, and everything it
// calls logs with it.
//
// Keys used across Berth: "error" for errors, "request_id" for an API
// request, "reconcile_id" and "controller" for a reconcile pass, "group"
// for a group's store key, "node" for a node name.
package log

import (
	"context"
	"log/slog"
)

type loggerKey struct{}

// WithLogger returns ctx carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// G returns the logger ctx carries, or slog.Default().
func G(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}

// With returns ctx whose logger has args added.
func With(ctx context.Context, args ...any) context.Context {
	return WithLogger(ctx, G(ctx).With(args...))
}
