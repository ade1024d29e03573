// Package cli builds the berth command tree with cobra. Commands only parse
// flags into options and call plain functions; nothing here holds logic.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/version"
)

// Main runs the berth command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Berth runs container groups the way Azure Container Instances does, on your own machines",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version + " (" + version.Commit + ")",
	}
	root.AddCommand(newServerCommand())
	return root
}

// newLogger returns the daemon logger: JSON on stderr at the given level.
func newLogger(level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
