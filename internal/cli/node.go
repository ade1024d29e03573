package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/client"
	"github.com/berth-dev/berth/internal/types"
)

// The node commands are the admin's: they call the node protocol's admin
// routes (/berth/v1/) with the configured token, which must be the admin's.

func newNodeCommand() *cobra.Command {
	cmd := groupCommand("node", "Manage the nodes of the cluster and the tokens that let them join",
		`Manage the machines of a Berth cluster: list and show them, cordon one so that no
new group is placed on it, drain one to move its groups to other nodes, and create
the one-time tokens with which 'berth agent --join-token' joins a new machine.
These commands need the admin's token.`)
	token := groupCommand("token", "Manage join tokens", `Create, list and delete the tokens a new node joins the cluster with. A token
is good for one join before it expires; only its id is shown after it is created.`)
	token.AddCommand(newNodeTokenCreateCommand(), newNodeTokenListCommand(), newNodeTokenDeleteCommand())
	cmd.AddCommand(token, newNodeListCommand(), newNodeShowCommand(),
		newNodeSchedulingCommand("cordon", "Mark a node unschedulable: no new group is placed on it"),
		newNodeSchedulingCommand("uncordon", "Let groups be placed on a node again (ends a drain)"),
		newNodeSchedulingCommand("drain", "Cordon a node and move its groups to other nodes"))
	return cmd
}

// addOutputFlags registers -o and --query: the node commands have no
// subscription.
func addOutputFlags(f *pflag.FlagSet, o *outputOptions, def string) {
	o.Format = def
	f.StringVarP(&o.Format, "output", "o", def, "output format: "+strings.Join(outputFormats, ", "))
	f.StringVar(&o.Query, "query", "", "JMESPath query string, applied to the result before it is printed (see http://jmespath.org)")
}

func newNodeTokenCreateCommand() *cobra.Command {
	var (
		o           outputOptions
		ttl         time.Duration
		description string
	)
	cmd := &cobra.Command{
		Use:   "create [--ttl 1h] [--description TEXT]",
		Short: "Create a join token and print it",
		Long: `Create a join token and print it: the only time its secret is shown. Give it to
'berth agent --join-token' on the machine that joins. With -o, the token's record
(token, id, expiry) is printed instead.`,
		Example: "  berth node token create --ttl 1h --description rack-4",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if ttl <= 0 || ttl > 7*24*time.Hour {
				return usagef("--ttl: %s is not between 0 and 168h", ttl)
			}
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			var created map[string]any
			body := map[string]string{"ttl": ttl.String(), "description": description}
			if _, err := api.call(cmd.Context(), http.MethodPost, "jointokens", body, &created); err != nil {
				return err
			}
			if !cmd.Flags().Changed("output") && o.Query == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), created["token"])
				return err
			}
			return writeResult(cmd.OutOrStdout(), created, o, nil)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is good for (at most 168h)")
	f.StringVar(&description, "description", "", "what the token is for, shown by 'berth node token list'")
	addOutputFlags(f, &o, formatJSON)
	return cmd
}

func newNodeTokenListCommand() *cobra.Command {
	var o outputOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the join tokens, without their secrets",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			var list struct {
				Items []map[string]any `json:"items"`
			}
			if _, err := api.call(cmd.Context(), http.MethodGet, "jointokens", nil, &list); err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), list.Items, o, joinTokenTable)
		},
	}
	addOutputFlags(cmd.Flags(), &o, formatTable)
	return cmd
}

func joinTokenTable(v any) any {
	return mapRows(v, func(m map[string]any) any {
		s := func(k string) string { t, _ := m[k].(string); return t }
		return orderedRow("ID", s("id"), "State", s("state"), "Expires", s("expiresAt"), "UsedBy", s("usedBy"), "Description", s("description"))
	})
}

func newNodeTokenDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a join token, so that nobody can join with it",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			status, err := api.call(cmd.Context(), http.MethodDelete, "jointokens/"+url.PathEscape(args[0]), nil, nil)
			if err != nil {
				return err
			}
			if status == http.StatusNoContent {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: there is no join token %s; nothing was deleted\n", args[0])
			}
			return nil
		},
	}
	return cmd
}

// nodeView is the server's answer for one node.
type nodeView struct {
	Node   types.Node   `json:"node"`
	Lease  *types.Lease `json:"lease"`
	Groups []string     `json:"groups"`
}

func newNodeListCommand() *cobra.Command {
	var o outputOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the nodes: status, zone, allocatable CPU and memory, groups, age",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			views, err := listNodes(cmd.Context(), api)
			if err != nil {
				return err
			}
			now := time.Now()
			rows := make([]any, 0, len(views))
			for _, v := range views {
				rows = append(rows, nodeRow(v, now))
			}
			return writeResult(cmd.OutOrStdout(), views, o, func(any) any { return rows })
		},
	}
	addOutputFlags(cmd.Flags(), &o, formatTable)
	return cmd
}

// listNodes lists the nodes, then reads each for its groups, a few at a
// time.
func listNodes(ctx context.Context, api *nodeAPI) ([]nodeView, error) {
	var list struct {
		Items []struct {
			Value types.Node `json:"value"`
		} `json:"items"`
	}
	if _, err := api.call(ctx, http.MethodGet, "nodes", nil, &list); err != nil {
		return nil, err
	}
	views := make([]nodeView, len(list.Items))
	errs := make([]error, len(list.Items))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, it := range list.Items {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := api.call(ctx, http.MethodGet, "nodes/"+url.PathEscape(it.Value.Name), nil, &views[i])
			if client.IsNotFound(err) {
				// Deleted since the list: show what the list said.
				views[i], err = nodeView{Node: it.Value}, nil
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return views, nil
}

// nodeRow is a node's line in the table, its status as kubectl shows it.
func nodeRow(v nodeView, now time.Time) map[string]any {
	n := v.Node
	status := "NotReady"
	switch c := n.Condition(types.NodeReady); {
	case c == nil || c.Status == types.ConditionUnknown:
		status = "Unknown"
	case c.Status == types.ConditionTrue:
		status = "Ready"
	}
	if n.Unschedulable {
		status += ",SchedulingDisabled"
	}
	if n.Draining {
		status += ",Draining"
	}
	return orderedRow("Name", n.Name, "Status", status, "Zone", n.Zone,
		"CPU", amount(n.Allocatable.CPU),
		"MemoryGB", amount(n.Allocatable.MemoryGB),
		"Groups", strconv.Itoa(len(v.Groups)), "Age", age(now.Sub(n.CreatedAt)))
}

// amount prints a resource amount to two decimals at most: a machine's
// memory in GB is rarely round.
func amount(v float64) string { return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) }

// age is a duration the way kubectl prints ages: 45s, 12m, 5h, 3d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

func newNodeShowCommand() *cobra.Command {
	var o outputOptions
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a node, its lease and the groups bound to it",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			var v nodeView
			if _, err := api.call(cmd.Context(), http.MethodGet, "nodes/"+url.PathEscape(args[0]), nil, &v); err != nil {
				return err
			}
			return writeResult(cmd.OutOrStdout(), v, o, func(any) any { return nodeRow(v, time.Now()) })
		},
	}
	addOutputFlags(cmd.Flags(), &o, formatJSON)
	return cmd
}

// newNodeSchedulingCommand is cordon, uncordon or drain.
func newNodeSchedulingCommand(verb, short string) *cobra.Command {
	done := map[string]string{"cordon": "cordoned", "uncordon": "uncordoned", "drain": "draining: its groups move to other nodes"}[verb]
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := connectNodeAPI()
			if err != nil {
				return err
			}
			if _, err := api.call(cmd.Context(), http.MethodPost, "nodes/"+url.PathEscape(args[0])+"/"+verb, nil, nil); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "node %s %s\n", args[0], done)
			return err
		},
	}
	return cmd
}

// exactArgs wants n positional arguments, named in the usage error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d arguments", names, len(args))
		}
		return nil
	}
}

// nodeAPI calls the admin routes of the node protocol with the CLI's
// config: its endpoints, CA and token. base is on the primary endpoint;
// the client's transport sends each request on to the endpoint that
// answers, failing over when a server cannot be reached.
type nodeAPI struct {
	base  *url.URL
	token string
	http  *http.Client
}

func connectNodeAPI() (*nodeAPI, error) {
	path, err := client.ConfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return newNodeAPI(cfg, path)
}

// newNodeAPI is connectNodeAPI for a config read from path (named in
// errors).
func newNodeAPI(cfg *client.Config, path string) (*nodeAPI, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	t, err := client.NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimRight(cfg.Endpoint, "/") + "/berth/v1/")
	if err != nil {
		return nil, fmt.Errorf("parse endpoint: %w", err)
	}
	return &nodeAPI{base: u, token: cfg.Token, http: &http.Client{Timeout: time.Minute, Transport: t}}, nil
}

// call sends a JSON body (nil: none), decodes a JSON answer into out (nil:
// ignored) and returns the status; a status of 400 or more is a
// *client.APIError.
func (a *nodeAPI) call(ctx context.Context, method, path string, body, out any) (int, error) {
	u := a.base.JoinPath(path)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: read response: %w", method, u.Path, err)
	}
	if resp.StatusCode >= 400 {
		ae := &client.APIError{StatusCode: resp.StatusCode}
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil && env.Error.Code != "" {
			ae.Code, ae.Message = env.Error.Code, env.Error.Message
		} else {
			ae.Code = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
			ae.Message = strings.TrimSpace(string(b))
		}
		return resp.StatusCode, ae
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode response: %w", method, u.Path, err)
		}
	}
	return resp.StatusCode, nil
}
