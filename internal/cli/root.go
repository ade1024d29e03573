// Package cli builds the berth command tree with cobra. Commands only parse
// flags into options and call plain functions; nothing here holds logic
// beyond turning flags into API calls and printing results.
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/version"
)

// Main runs the berth command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Stdin, stdout, stderr)
}

// run is Main with stdin injected, for tests.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(expandMultiValueFlags(args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		path := "berth"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		return reportError(stderr, path, err)
	}
	return 0
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Berth runs container groups the way Azure Container Instances does, on your own machines",
		Long: `Berth runs container groups the way Azure Container Instances does, on your own machines.

'berth server' runs the service. The other commands are the client: they talk
to the service's REST API the way 'az container' talks to Azure, with az's
flags, output formats (-o json|jsonc|yaml|table|tsv) and JMESPath --query.
Run 'berth login --config DATA_DIR/client.json' once to point them at a server.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version + " (" + version.Commit + ")",
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	root.AddCommand(
		newServerCommand(),
		newAgentCommand(),
		newLoginCommand(),
		newConfigureCommand(),
		newGroupCommand(),
		newContainerCommand(),
		newNodeCommand(),
		newClusterCommand(),
	)
	return root
}

// newLogger returns the daemon logger: JSON on stderr at the given level.
func newLogger(level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
