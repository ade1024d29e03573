package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/client"
)

type execOptions struct {
	Ref       groupRefOptions
	Container string
	Command   string
}

func newContainerExecCommand() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec -g RG -n NAME --exec-command CMD [--container-name C]",
		Short: "Run a command in a running container, with a terminal",
		Long: `Run a command in a running container and connect this terminal to it, as
'az container exec' does. The session ends when the command exits.

ACI runs one executable without arguments (e.g. /bin/sh). Berth also takes
arguments, split with shell-word rules (quotes and backslashes; no
variables or globbing), e.g. --exec-command "sh -c 'ls /tmp'".`,
		Example: "  berth container exec -g demo -n hello --exec-command /bin/sh\n" +
			"  berth container exec -g demo -n hello --exec-command \"cat /etc/hosts\"",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--exec-command", o.Command); err != nil {
				return err
			}
			s, ref, err := o.Ref.open()
			if err != nil {
				return err
			}
			return execCommand(cmd.Context(), s.client, ref, o, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	addGroupRefFlags(cmd, &o.Ref)
	cmd.Flags().StringVar(&o.Container, "container-name", "", "the container (default: the group's only container)")
	cmd.Flags().StringVar(&o.Command, "exec-command", "", "the command to run, e.g. /bin/sh (arguments split with shell-word rules)")
	return cmd
}

// execCommand starts the command, puts a terminal stdin in raw mode, and
// pipes the session until the server closes it.
func execCommand(ctx context.Context, c *client.Client, ref client.GroupRef, o execOptions, stdin io.Reader, stdout io.Writer) error {
	_, name, err := pickContainer(ctx, c, ref, o.Container)
	if err != nil {
		return err
	}
	// The remote terminal gets the size of the local one, as az sends it;
	// 24x80 when neither stdin nor stdout is a terminal.
	size := &client.TerminalSize{Rows: 24, Cols: 80}
	for _, s := range []any{stdin, stdout} {
		if f, ok := s.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			if cols, rows, err := term.GetSize(int(f.Fd())); err == nil {
				size = &client.TerminalSize{Rows: int32(rows), Cols: int32(cols)}
				break
			}
		}
	}
	ep, err := c.Exec(ctx, ref, name, client.ExecRequest{Command: o.Command, TerminalSize: size})
	if err != nil {
		return err
	}
	conn, err := c.DialExec(ctx, ep)
	if err != nil {
		return err
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			conn.Close()
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	return ignoreCanceled(ctx, client.Pipe(ctx, conn, stdin, stdout))
}

func newContainerAttachCommand() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "attach -g RG -n NAME [--container-name C]",
		Short: "Stream a container's output to this terminal until Ctrl-C",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, ref, err := o.Ref.open()
			if err != nil {
				return err
			}
			return attach(cmd.Context(), s.client, ref, o.Container, cmd.OutOrStdout())
		},
	}
	addGroupRefFlags(cmd, &o.Ref)
	cmd.Flags().StringVar(&o.Container, "container-name", "", "the container (default: the group's only container)")
	return cmd
}

func attach(ctx context.Context, c *client.Client, ref client.GroupRef, container string, stdout io.Writer) error {
	_, name, err := pickContainer(ctx, c, ref, container)
	if err != nil {
		return err
	}
	ep, err := c.Attach(ctx, ref, name)
	if err != nil {
		return err
	}
	conn, err := c.DialAttach(ctx, ep)
	if err != nil {
		return err
	}
	return ignoreCanceled(ctx, client.Pipe(ctx, conn, nil, stdout))
}
