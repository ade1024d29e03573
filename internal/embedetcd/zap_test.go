package embedetcd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestSlogCore(t *testing.T) {
	tests := []struct {
		name string
		log  func(lg *zap.Logger)
		want []string // substrings of the output; nil: no output
	}{
		{
			name: "a warning keeps its level, message and fields",
			log: func(lg *zap.Logger) {
				lg.Warn("slow disk", zap.String("path", "/x"), zap.Int("ms", 7))
			},
			want: []string{"level=WARN", `msg="slow disk"`, "path=/x", "ms=7"},
		},
		{
			name: "fields given to With come along",
			log: func(lg *zap.Logger) {
				lg.With(zap.String("member", "berth")).Named("raft").Error("lost leader")
			},
			want: []string{"level=ERROR", "member=berth", "logger=raft", `msg="lost leader"`},
		},
		{
			name: "records below the minimum level are dropped",
			log: func(lg *zap.Logger) {
				lg.Info("applied entry")
			},
		},
		{
			name: "demoted messages go to debug, below the handler level",
			log: func(lg *zap.Logger) {
				lg.Warn("expected")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
			demote := func(msg string) bool { return msg == "expected" }
			tt.log(zap.New(newSlogCore(slog.New(h), zapcore.WarnLevel, demote)))
			got := buf.String()
			if tt.want == nil && got != "" {
				t.Fatalf("got output %q, want none", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output %q lacks %q", got, w)
				}
			}
		})
	}
}
