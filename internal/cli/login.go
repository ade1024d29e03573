package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/client"
)

func newLoginCommand() *cobra.Command {
	var opts loginOptions
	cmd := &cobra.Command{
		Use:   "login --config FILE",
		Short: "Install a server's client.json as this user's berth config",
		Long: `Install a server's client.json (endpoint, CA file and token; berth server writes
it to DATA_DIR/client.json) as the config the other commands use: $BERTH_CONFIG,
or ~/.berth/config.json. The server is asked once to check that the settings work.
Defaults set with 'berth configure' are kept.`,
		Example: `  berth login --config /var/lib/berth/client.json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--config", opts.From); err != nil {
				return err
			}
			path, err := client.ConfigPath()
			if err != nil {
				return err
			}
			opts.To = path
			return login(cmd.Context(), opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&opts.From, "config", "", "client.json written by berth server (endpoint, caFile, token)")
	return cmd
}

type loginOptions struct {
	From string // client.json to install
	To   string // config file to write
}

// login checks the settings in opts.From against the server and writes
// them to opts.To, keeping the defaults already there.
func login(ctx context.Context, opts loginOptions, w io.Writer) error {
	from, err := client.LoadConfig(opts.From)
	if err != nil {
		return err
	}
	if from.CAFile, err = filepath.Abs(from.CAFile); err != nil {
		return err
	}
	c, err := client.New(from)
	if err != nil {
		return fmt.Errorf("%s: %w", opts.From, err)
	}
	cfg := &client.Config{Endpoint: from.Endpoint, CAFile: from.CAFile, Token: from.Token, Defaults: from.Defaults}
	if old, err := client.LoadConfig(opts.To); err == nil {
		cfg.Defaults = old.Defaults
	} else if !errors.Is(err, client.ErrNoConfig) {
		return err
	}
	if _, err := c.ListResourceGroups(ctx, cfg.Subscription()); err != nil {
		return fmt.Errorf("check the server at %s: %w", cfg.Endpoint, err)
	}
	if err := client.SaveConfig(opts.To, cfg); err != nil {
		return err
	}
	fmt.Fprintf(w, "Logged in to %s; config written to %s\n", cfg.Endpoint, opts.To)
	return nil
}

// defaultKeys are the settings 'berth configure --defaults' knows.
var defaultKeys = []string{"group", "location", "subscription"}

func newConfigureCommand() *cobra.Command {
	var opts configureOptions
	var g globalOptions
	cmd := &cobra.Command{
		Use:   "configure --defaults KEY=VALUE [KEY=VALUE ...]",
		Short: "Set or show the default resource group, subscription and location",
		Long: `Set defaults the other commands use when a flag is not given, as 'az configure' does.
Keys: group (--resource-group), subscription (--subscription; built-in default
` + client.DefaultSubscription + `) and location (--location; built-in default ` + client.DefaultLocation + `).
An empty value removes a default.`,
		Example: `  berth configure --defaults group=demo location=westus
  berth configure --defaults group=
  berth configure --list-defaults -o table`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.Output.validate(); err != nil {
				return err
			}
			if len(opts.Defaults) == 0 && !opts.List {
				return usagef("give --defaults KEY=VALUE ... or --list-defaults")
			}
			path, err := client.ConfigPath()
			if err != nil {
				return err
			}
			opts.Path = path
			return configure(opts, g.Output, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&opts.Defaults, "defaults", nil, "space-separated KEY=VALUE pairs; keys: "+strings.Join(defaultKeys, ", "))
	f.BoolVarP(&opts.List, "list-defaults", "l", false, "print the defaults")
	f.StringVarP(&g.Output.Format, "output", "o", formatJSON, "output format of --list-defaults: "+strings.Join(outputFormats, ", "))
	f.StringVar(&g.Output.Query, "query", "", "JMESPath query string applied to --list-defaults")
	return cmd
}

type configureOptions struct {
	Path     string
	Defaults []string
	List     bool
}

// configure updates the defaults in the config file, and prints them with
// List.
func configure(opts configureOptions, out outputOptions, w io.Writer) error {
	cfg, err := client.LoadConfig(opts.Path)
	if errors.Is(err, client.ErrNoConfig) {
		cfg, err = &client.Config{}, nil
	}
	if err != nil {
		return err
	}
	if len(opts.Defaults) > 0 {
		for _, kv := range opts.Defaults {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usagef("--defaults: %q is not KEY=VALUE", kv)
			}
			switch k {
			case "group":
				cfg.Defaults.Group = v
			case "location":
				cfg.Defaults.Location = v
			case "subscription":
				cfg.Defaults.Subscription = v
			default:
				return usagef("--defaults: unknown key %q (expected one of %s)", k, strings.Join(defaultKeys, ", "))
			}
		}
		if err := client.SaveConfig(opts.Path, cfg); err != nil {
			return err
		}
	}
	if !opts.List {
		return nil
	}
	type entry struct {
		Name   string `json:"name"`
		Source string `json:"source"`
		Value  string `json:"value"`
	}
	list := []entry{}
	for _, k := range slices.Sorted(slices.Values(defaultKeys)) {
		v := map[string]string{"group": cfg.Defaults.Group, "location": cfg.Defaults.Location, "subscription": cfg.Defaults.Subscription}[k]
		if v != "" {
			list = append(list, entry{Name: k, Source: opts.Path, Value: v})
		}
	}
	return writeResult(w, list, out, nil)
}
