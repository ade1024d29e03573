package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/client"
)

func newContainerCommand() *cobra.Command {
	cmd := groupCommand("container", "Manage container groups", `Manage container groups, as 'az container' does: create them from flags or a YAML
file, inspect them, read their logs, run commands in them, and delete them.`)
	cmd.AddCommand(
		newContainerCreateCommand(),
		newContainerShowCommand(),
		newContainerListCommand(),
		newContainerLogsCommand(),
		newContainerExecCommand(),
		newContainerAttachCommand(),
		newContainerActionCommand("start", "Start the containers of a stopped container group", true),
		newContainerActionCommand("stop", "Stop all containers of a container group", false),
		newContainerActionCommand("restart", "Restart all containers of a container group in place", true),
		newContainerDeleteCommand(),
		newContainerExportCommand(),
	)
	return cmd
}

// groupRefOptions name one container group.
type groupRefOptions struct {
	Global        globalOptions
	ResourceGroup string
	Name          string
}

func addGroupRefFlags(cmd *cobra.Command, o *groupRefOptions) {
	f := cmd.Flags()
	f.StringVarP(&o.ResourceGroup, "resource-group", "g", "", "name of the resource group (default: the configured default group)")
	f.StringVarP(&o.Name, "name", "n", "", "name of the container group")
	addGlobalFlags(f, &o.Global)
}

// open connects and resolves the group's reference.
func (o *groupRefOptions) open() (*session, client.GroupRef, error) {
	if err := requireFlag("--name/-n", o.Name); err != nil {
		return nil, client.GroupRef{}, err
	}
	s, err := connect(&o.Global)
	if err != nil {
		return nil, client.GroupRef{}, err
	}
	rg, err := s.resourceGroup(o.ResourceGroup)
	if err != nil {
		return nil, client.GroupRef{}, err
	}
	return s, client.GroupRef{Subscription: s.sub, ResourceGroup: rg, Name: o.Name}, nil
}

func newContainerShowCommand() *cobra.Command {
	var o groupRefOptions
	cmd := &cobra.Command{
		Use:   "show -g RG -n NAME",
		Short: "Show a container group with the state of its containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, ref, err := o.open()
			if err != nil {
				return err
			}
			return showGroup(cmd.Context(), s.client, ref, o.Global.Output, cmd.OutOrStdout())
		},
	}
	addGroupRefFlags(cmd, &o)
	return cmd
}

func showGroup(ctx context.Context, c *client.Client, ref client.GroupRef, out outputOptions, w io.Writer) error {
	g, err := c.GetContainerGroup(ctx, ref)
	if err != nil {
		return err
	}
	return writeResult(w, g, out, containerGroupTable)
}

func newContainerListCommand() *cobra.Command {
	var o groupRefOptions
	cmd := &cobra.Command{
		Use:   "list [-g RG]",
		Short: "List the container groups of a resource group, or of the subscription",
		Long: `List container groups: those of the resource group given with -g, else those of the
whole subscription (the configured default group is not applied, as in az).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(&o.Global)
			if err != nil {
				return err
			}
			return listGroups(cmd.Context(), s.client, s.sub, o.ResourceGroup, o.Global.Output, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&o.ResourceGroup, "resource-group", "g", "", "name of the resource group (default: all groups of the subscription)")
	addGlobalFlags(cmd.Flags(), &o.Global)
	return cmd
}

func listGroups(ctx context.Context, c *client.Client, sub, rg string, out outputOptions, w io.Writer) error {
	gs, err := c.ListContainerGroups(ctx, sub, rg)
	if err != nil {
		return err
	}
	return writeResult(w, gs, out, containerGroupTable)
}

func newContainerDeleteCommand() *cobra.Command {
	var o groupRefOptions
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "delete -g RG -n NAME [--yes]",
		Short: "Delete a container group: stop its containers and release its resources",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", o.Name); err != nil {
				return err
			}
			if !yes {
				ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr())
				if err != nil || !ok {
					return err
				}
			}
			s, ref, err := o.open()
			if err != nil {
				return err
			}
			return deleteGroup(cmd.Context(), s.client, ref, noWait)
		},
	}
	addGroupRefFlags(cmd, &o)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the deletion to finish")
	return cmd
}

func deleteGroup(ctx context.Context, c *client.Client, ref client.GroupRef, noWait bool) error {
	op, err := c.BeginDelete(ctx, ref)
	if err != nil || op == nil || noWait {
		return err
	}
	_, err = c.Wait(ctx, op, nil)
	return err
}

// newContainerActionCommand builds start, stop and restart.
func newContainerActionCommand(verb, short string, canNoWait bool) *cobra.Command {
	var o groupRefOptions
	var noWait bool
	cmd := &cobra.Command{
		Use:   verb + " -g RG -n NAME",
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, ref, err := o.open()
			if err != nil {
				return err
			}
			return groupAction(cmd.Context(), s.client, ref, verb, noWait)
		},
	}
	addGroupRefFlags(cmd, &o)
	if canNoWait {
		cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")
	}
	return cmd
}

func groupAction(ctx context.Context, c *client.Client, ref client.GroupRef, verb string, noWait bool) error {
	call := map[string]func(context.Context, client.GroupRef) (*client.Operation, error){
		"start": c.Start, "stop": c.Stop, "restart": c.Restart,
	}[verb]
	op, err := call(ctx, ref)
	if err != nil || op == nil || noWait {
		return err
	}
	_, err = c.Wait(ctx, op, nil)
	return err
}

func newContainerExportCommand() *cobra.Command {
	var o groupRefOptions
	var file string
	cmd := &cobra.Command{
		Use:   "export -g RG -n NAME --file FILE",
		Short: "Write a container group as a YAML deployment file",
		Long: `Write a container group as a YAML file in ACI's deployment format, which
'berth container create --file' (and 'az container create --file') reads.
Read-only fields (id, states, the assigned IP) are left out. Secure
environment variable values are never returned by the API, so they are
exported without values: fill them in before creating from the file.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--file/-f", file); err != nil {
				return err
			}
			s, ref, err := o.open()
			if err != nil {
				return err
			}
			return exportGroup(cmd.Context(), s.client, ref, file)
		},
	}
	addGroupRefFlags(cmd, &o)
	cmd.Flags().StringVarP(&file, "file", "f", "", "the YAML file to write")
	return cmd
}

func exportGroup(ctx context.Context, c *client.Client, ref client.GroupRef, file string) error {
	g, err := c.GetContainerGroup(ctx, ref)
	if err != nil {
		return err
	}
	b, err := exportYAML(g.Raw)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// containerGroupTable is az's table for container groups: one row per
// group with its state, images, address, network, size, OS and location.
func containerGroupTable(v any) any {
	return mapRows(v, func(m map[string]any) any {
		props, _ := m["properties"].(map[string]any)
		str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
		var images []string
		var cpu, mem float64
		cs, _ := props["containers"].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			cp, _ := cm["properties"].(map[string]any)
			images = append(images, str(cp, "image"))
			res, _ := cp["resources"].(map[string]any)
			req, _ := res["requests"].(map[string]any)
			f1, _ := req["cpu"].(float64)
			f2, _ := req["memoryInGB"].(float64)
			cpu, mem = cpu+f1, mem+f2
		}
		ipPorts, network := "", ""
		if ip, ok := props["ipAddress"].(map[string]any); ok {
			var ports []string
			ps, _ := ip["ports"].([]any)
			for _, p := range ps {
				pm, _ := p.(map[string]any)
				if n, ok := pm["port"].(float64); ok {
					ports = append(ports, strconv.Itoa(int(n)))
				}
			}
			ipPorts = str(ip, "ip") + ":" + strings.Join(ports, ",")
			network = str(ip, "type")
		}
		return orderedRow(
			"Name", str(m, "name"),
			"ResourceGroup", str(m, "resourceGroup"),
			"Status", str(props, "provisioningState"),
			"Image", strings.Join(images, ","),
			"IP:ports", ipPorts,
			"Network", network,
			"CPU/Memory", pyFloat(cpu)+" core/"+pyFloat(mem)+" gb",
			"OsType", str(props, "osType"),
			"Location", str(m, "location"),
		)
	})
}

// pyFloat prints a float as Python's str does (1.0, 1.5), as az shows sizes.
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}
