package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/client"
)

func newGroupCommand() *cobra.Command {
	cmd := groupCommand("group", "Manage resource groups", `Manage resource groups, the containers of container groups, as 'az group' does.`)
	cmd.AddCommand(newGroupCreateCommand(), newGroupShowCommand(), newGroupListCommand(), newGroupDeleteCommand())
	return cmd
}

type groupOptions struct {
	Global   globalOptions
	Name     string
	Location string
	Tags     []string
	Yes      bool
}

func newGroupCreateCommand() *cobra.Command {
	var o groupOptions
	cmd := &cobra.Command{
		Use:     "create -n NAME [-l LOCATION]",
		Short:   "Create a resource group, or update its tags",
		Example: "  berth group create -n demo -l westus",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", o.Name); err != nil {
				return err
			}
			tags, err := parseKeyValues("--tags", o.Tags, true)
			if err != nil {
				return err
			}
			s, err := connect(&o.Global)
			if err != nil {
				return err
			}
			loc := o.Location
			if loc == "" {
				loc = s.config.Location()
			}
			rg, err := s.client.CreateResourceGroup(cmd.Context(), s.sub, o.Name, armv1.ResourceGroup{Location: loc, Tags: tags})
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), rg, o.Global.Output, resourceGroupTable)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Name, "name", "n", "", "name of the resource group")
	f.StringVarP(&o.Location, "location", "l", "", "location (default: the configured default, else "+client.DefaultLocation+")")
	f.StringArrayVar(&o.Tags, "tags", nil, "space-separated tags: key[=value]")
	addGlobalFlags(f, &o.Global)
	return cmd
}

func newGroupShowCommand() *cobra.Command {
	var o groupOptions
	cmd := &cobra.Command{
		Use:   "show -n NAME",
		Short: "Show a resource group",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(&o.Global)
			if err != nil {
				return err
			}
			name, err := s.resourceGroup(o.Name)
			if err != nil {
				return usagef("the following arguments are required: --name/-n")
			}
			rg, err := s.client.GetResourceGroup(cmd.Context(), s.sub, name)
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), rg, o.Global.Output, resourceGroupTable)
		},
	}
	cmd.Flags().StringVarP(&o.Name, "name", "n", "", "name of the resource group (default: the configured default group)")
	addGlobalFlags(cmd.Flags(), &o.Global)
	return cmd
}

func newGroupListCommand() *cobra.Command {
	var o groupOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the resource groups of the subscription",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(&o.Global)
			if err != nil {
				return err
			}
			rgs, err := s.client.ListResourceGroups(cmd.Context(), s.sub)
			if err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), rgs, o.Global.Output, resourceGroupTable)
		},
	}
	addGlobalFlags(cmd.Flags(), &o.Global)
	return cmd
}

func newGroupDeleteCommand() *cobra.Command {
	var o groupOptions
	cmd := &cobra.Command{
		Use:   "delete -n NAME [--yes]",
		Short: "Delete a resource group and every container group in it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--name/-n", o.Name); err != nil {
				return err
			}
			if err := o.Global.Output.validate(); err != nil {
				return err
			}
			if !o.Yes {
				ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr())
				if err != nil || !ok {
					return err
				}
			}
			s, err := connect(&o.Global)
			if err != nil {
				return err
			}
			return s.client.DeleteResourceGroup(cmd.Context(), s.sub, o.Name)
		},
	}
	cmd.Flags().StringVarP(&o.Name, "name", "n", "", "name of the resource group")
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "do not prompt for confirmation")
	addGlobalFlags(cmd.Flags(), &o.Global)
	return cmd
}

// confirm asks az's question on stderr and reads the answer from in.
func confirm(in io.Reader, w io.Writer) (bool, error) {
	fmt.Fprint(w, "Are you sure you want to perform this operation? (y/n): ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return false, usagef("no answer to the confirmation prompt; give --yes to skip it")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// resourceGroupTable is az's table for resource groups.
func resourceGroupTable(v any) any {
	row := func(m map[string]any) any {
		state := ""
		if p, ok := m["properties"].(map[string]any); ok {
			state, _ = p["provisioningState"].(string)
		}
		name, _ := m["name"].(string)
		loc, _ := m["location"].(string)
		return orderedRow("Name", name, "Location", loc, "Status", state)
	}
	return mapRows(v, row)
}

// mapRows applies row to an object or to each object of a list.
func mapRows(v any, row func(map[string]any) any) any {
	switch d := v.(type) {
	case map[string]any:
		return row(d)
	case []any:
		out := make([]any, 0, len(d))
		for _, e := range d {
			if m, ok := e.(map[string]any); ok {
				out = append(out, row(m))
			}
		}
		return out
	}
	return v
}

// parseKeyValues parses KEY=VALUE words; with optionalValue a bare KEY
// means an empty value (az's tag syntax).
func parseKeyValues(flag string, words []string, optionalValue bool) (map[string]string, error) {
	if len(words) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if k == "" || (!ok && !optionalValue) {
			return nil, usagef("%s: %q is not in KEY=VALUE format", flag, w)
		}
		out[k] = v
	}
	return out, nil
}
