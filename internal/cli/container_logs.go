package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/client"
)

type logsOptions struct {
	Ref       groupRefOptions
	Container string
	Follow    bool
	Tail      int
	// Every is the polling interval of --follow.
	Every time.Duration
}

func newContainerLogsCommand() *cobra.Command {
	o := logsOptions{Every: time.Second}
	cmd := &cobra.Command{
		Use:   "logs -g RG -n NAME [--container-name C] [--follow]",
		Short: "Print the log of a container",
		Long: `Print the log (stdout and stderr) of a container of a group. --container-name is
needed when the group has several containers. With --follow, new lines are
printed as they come until the container ends for good or Ctrl-C.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, ref, err := o.Ref.open()
			if err != nil {
				return err
			}
			return containerLogs(cmd.Context(), s.client, ref, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addGroupRefFlags(cmd, &o.Ref)
	f := cmd.Flags()
	f.StringVar(&o.Container, "container-name", "", "the container (default: the group's only container)")
	f.BoolVar(&o.Follow, "follow", false, "keep printing new lines as the container writes them")
	f.IntVar(&o.Tail, "tail", 0, "print only the last N lines (0: all)")
	return cmd
}

// pickContainer returns name, or the group's only container; a group with
// several needs --container-name.
func pickContainer(ctx context.Context, c *client.Client, ref client.GroupRef, name string) (*client.ContainerGroup, string, error) {
	g, err := c.GetContainerGroup(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	var names []string
	if g.Properties != nil {
		for _, c := range g.Properties.Containers {
			names = append(names, c.Name)
		}
	}
	if name != "" {
		return g, name, nil
	}
	if len(names) != 1 {
		return nil, "", usagef("the container group has %d containers (%s); choose one with --container-name", len(names), strings.Join(names, ", "))
	}
	return g, names[0], nil
}

func containerLogs(ctx context.Context, c *client.Client, ref client.GroupRef, o logsOptions, w, errw io.Writer) error {
	_, name, err := pickContainer(ctx, c, ref, o.Container)
	if err != nil {
		return err
	}
	content, err := c.Logs(ctx, ref, name, o.Tail)
	if err != nil {
		return err
	}
	if !o.Follow {
		if content != "" && !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		_, err := io.WriteString(w, content)
		return err
	}
	return followLogs(ctx, c, ref, name, content, o.Every, w, errw)
}

// followLogs prints complete lines as the log grows. The API returns the
// whole log each time, so what was printed is remembered as a line count;
// a log that shrinks means the container started again with a fresh log.
// It ends when ctx ends (nil: Ctrl-C is the normal way out) or when the
// container has ended and will not be restarted.
func followLogs(ctx context.Context, c *client.Client, ref client.GroupRef, name, content string, every time.Duration, w, errw io.Writer) error {
	printed := 0
	emit := func(content string) error {
		lines := strings.SplitAfter(content, "\n")
		complete := lines[:len(lines)-1] // the last element is an unfinished line or ""
		if len(complete) < printed {
			fmt.Fprintf(errw, "The log of container '%s' started again (the container restarted).\n", name)
			printed = 0
		}
		for _, l := range complete[printed:] {
			if _, err := io.WriteString(w, l); err != nil {
				return err
			}
		}
		printed = len(complete)
		return nil
	}
	for {
		if err := emit(content); err != nil {
			return err
		}
		if done, err := containerFinished(ctx, c, ref, name); err != nil || done {
			if err == nil {
				// Print what it wrote last, including an unfinished line.
				if content, err = c.Logs(ctx, ref, name, 0); err == nil {
					err = emit(content + "\n")
				}
			}
			return ignoreCanceled(ctx, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		var err error
		if content, err = c.Logs(ctx, ref, name, 0); err != nil {
			return ignoreCanceled(ctx, err)
		}
	}
}

// containerFinished reports whether the container is terminated for good:
// the group failed or succeeded, or the container ended under a restart
// policy that will not start it again.
func containerFinished(ctx context.Context, c *client.Client, ref client.GroupRef, name string) (bool, error) {
	g, err := c.GetContainerGroup(ctx, ref)
	if err != nil || g.Properties == nil {
		return false, err
	}
	p := g.Properties
	if iv := p.InstanceView; iv != nil && (iv.State == "Succeeded" || iv.State == "Failed" || iv.State == "Stopped") {
		return true, nil
	}
	if p.RestartPolicy == "Always" || p.RestartPolicy == "" {
		return false, nil
	}
	for _, ct := range p.Containers {
		if ct.Name != name || ct.Properties == nil || ct.Properties.InstanceView == nil || ct.Properties.InstanceView.CurrentState == nil {
			continue
		}
		st := ct.Properties.InstanceView.CurrentState
		if st.State != "Terminated" {
			return false, nil
		}
		return p.RestartPolicy == "Never" || (st.ExitCode != nil && *st.ExitCode == 0), nil
	}
	return false, nil
}

// ignoreCanceled turns the error of an interrupted call into nil: Ctrl-C
// ends --follow and attach normally.
func ignoreCanceled(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}
