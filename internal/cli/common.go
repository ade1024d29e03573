package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/client"
)

// globalOptions are the flags every API command takes, as az's global
// arguments: where to send the call and how to print the answer.
type globalOptions struct {
	Subscription string
	Output       outputOptions
}

// addGlobalFlags registers -o, --query and --subscription on cmd.
func addGlobalFlags(f *pflag.FlagSet, g *globalOptions) {
	f.StringVarP(&g.Output.Format, "output", "o", formatJSON, "output format: "+strings.Join(outputFormats, ", "))
	f.StringVar(&g.Output.Query, "query", "", "JMESPath query string, applied to the result before it is printed (see http://jmespath.org)")
	f.StringVar(&g.Subscription, "subscription", "", "subscription id (default: the configured default, else "+client.DefaultSubscription+")")
}

// session is what a command needs to call the API: the client and the
// config defaults.
type session struct {
	client *client.Client
	config *client.Config
	sub    string
}

// connect loads the config and builds a client; the subscription is the
// flag's, else the configured default.
func connect(g *globalOptions) (*session, error) {
	if err := g.Output.validate(); err != nil {
		return nil, err
	}
	path, err := client.ConfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	sub := g.Subscription
	if sub == "" {
		sub = cfg.Subscription()
	}
	return &session{client: c, config: cfg, sub: sub}, nil
}

// resourceGroup returns rg, else the configured default group, else a
// usage error that says how to set one.
func (s *session) resourceGroup(rg string) (string, error) {
	if rg != "" {
		return rg, nil
	}
	if s.config.Defaults.Group != "" {
		return s.config.Defaults.Group, nil
	}
	return "", usagef("the following arguments are required: --resource-group/-g (or set a default with 'berth configure --defaults group=NAME')")
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unrecognized arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// groupCommand returns a parent command that shows its help when called
// alone and refuses unknown subcommands.
func groupCommand(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("'%s' is not a '%s' command; choose one of: %s", args[0], cmd.CommandPath(), subcommandNames(cmd))
			}
			return cmd.Help()
		},
	}
}

func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return strings.Join(names, ", ")
}

// requireFlag fails with a usage error when a required flag is empty.
func requireFlag(name, value string) error {
	if value == "" {
		return usagef("the following arguments are required: %s", name)
	}
	return nil
}
