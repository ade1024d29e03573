package embedetcd

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that hands etcd's zap records to slog, so etcd
// writes to Berth's log instead of its own stderr stream. zap stays inside
// this package.
type slogCore struct {
	lg  *slog.Logger
	min zapcore.Level
	// demote, when it returns true, logs a record at debug level: etcd
	// warns about things that are expected in Berth's setup.
	demote func(msg string) bool
	attrs  []slog.Attr
}

func newSlogCore(lg *slog.Logger, min zapcore.Level, demote func(msg string) bool) zapcore.Core {
	if demote == nil {
		demote = func(string) bool { return false }
	}
	return &slogCore{lg: lg, min: min, demote: demote}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return l >= c.min
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	cc := *c
	cc.attrs = append(slices.Clip(c.attrs), fieldAttrs(fields)...)
	return &cc
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) && c.lg.Enabled(context.Background(), c.level(e)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) level(e zapcore.Entry) slog.Level {
	if c.demote(e.Message) {
		return slog.LevelDebug
	}
	return slogLevel(e.Level)
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, c.level(e), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(c.attrs...)
	r.AddAttrs(fieldAttrs(fields)...)
	return c.lg.Handler().Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// fieldAttrs encodes zap fields through zap's own map encoder, which knows
// every field type, and returns them sorted by key for stable output.
func fieldAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
