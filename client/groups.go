package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// ContainerGroup is a container group as the server sent it: the typed
// wire model, plus the JSON exactly as received, so that fields
// api/v20230501 does not model yet still reach output and exports.
type ContainerGroup struct {
	armv1.ContainerGroup
	// Raw is the group's JSON as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw JSON next to the typed view.
func (g *ContainerGroup) UnmarshalJSON(b []byte) error {
	g.Raw = append(json.RawMessage(nil), b...)
	return json.Unmarshal(b, &g.ContainerGroup)
}

// MarshalJSON writes the JSON as received, or the typed view for a group
// built locally.
func (g ContainerGroup) MarshalJSON() ([]byte, error) {
	if g.Raw != nil {
		return g.Raw, nil
	}
	return json.Marshal(g.ContainerGroup)
}

// BeginCreateOrUpdate PUTs a container group. body is anything that
// encodes to the group's JSON (an armv1.ContainerGroup, a ContainerGroupRequest, or
// a generic map read from a YAML file). It returns the server's first
// answer (provisioningState Pending) and the operation to wait for.
func (c *Client) BeginCreateOrUpdate(ctx context.Context, ref GroupRef, body any) (*ContainerGroup, *Operation, error) {
	resp, err := c.do(ctx, request{method: http.MethodPut, path: ref.Path(), apiVersion: armv1.APIVersion, body: body})
	if err != nil {
		return nil, nil, err
	}
	var g ContainerGroup
	if err := decodeJSON(resp.body, &g); err != nil {
		return nil, nil, err
	}
	return &g, operationFrom(resp), nil
}

// GetContainerGroup reads a container group with its instance views.
func (c *Client) GetContainerGroup(ctx context.Context, ref GroupRef) (*ContainerGroup, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: ref.Path(), apiVersion: armv1.APIVersion})
	if err != nil {
		return nil, err
	}
	var g ContainerGroup
	return &g, decodeJSON(resp.body, &g)
}

// ListContainerGroups lists the container groups of a resource group, or
// of the whole subscription when rg is empty, following next links.
func (c *Client) ListContainerGroups(ctx context.Context, sub, rg string) ([]ContainerGroup, error) {
	next := "/subscriptions/" + url.PathEscape(sub)
	if rg != "" {
		next = resourceGroupPath(sub, rg)
	}
	next += "/providers/Microsoft.ContainerInstance/containerGroups"
	version := armv1.APIVersion
	out := []ContainerGroup{}
	for next != "" {
		resp, err := c.do(ctx, request{method: http.MethodGet, path: next, apiVersion: version})
		if err != nil {
			return nil, err
		}
		var page struct {
			Value    []ContainerGroup `json:"value"`
			NextLink string           `json:"nextLink"`
		}
		if err := decodeJSON(resp.body, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		next, version = page.NextLink, ""
	}
	return out, nil
}

// BeginDelete deletes a container group. The operation is nil when the
// server finished at once (or the group did not exist: 204).
func (c *Client) BeginDelete(ctx context.Context, ref GroupRef) (*Operation, error) {
	resp, err := c.do(ctx, request{method: http.MethodDelete, path: ref.Path(), apiVersion: armv1.APIVersion})
	if err != nil {
		return nil, err
	}
	return operationFrom(resp), nil
}

// Start starts the containers of a stopped group (ACI's Start: 202 and an
// operation).
func (c *Client) Start(ctx context.Context, ref GroupRef) (*Operation, error) {
	return c.action(ctx, ref, "start")
}

// Stop stops all containers of a group (ACI's Stop answers 204 at once).
func (c *Client) Stop(ctx context.Context, ref GroupRef) (*Operation, error) {
	return c.action(ctx, ref, "stop")
}

// Restart restarts all containers of a group in place.
func (c *Client) Restart(ctx context.Context, ref GroupRef) (*Operation, error) {
	return c.action(ctx, ref, "restart")
}

func (c *Client) action(ctx context.Context, ref GroupRef, verb string) (*Operation, error) {
	resp, err := c.do(ctx, request{method: http.MethodPost, path: ref.Path() + "/" + verb, apiVersion: armv1.APIVersion})
	if err != nil {
		return nil, err
	}
	return operationFrom(resp), nil
}

// Logs returns a container's log; tail > 0 keeps only the last lines.
func (c *Client) Logs(ctx context.Context, ref GroupRef, container string, tail int) (string, error) {
	q := url.Values{}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, path: ref.Path() + "/containers/" + url.PathEscape(container) + "/logs", apiVersion: armv1.APIVersion, query: q})
	if err != nil {
		return "", err
	}
	var l armv1.Logs
	if err := decodeJSON(resp.body, &l); err != nil {
		return "", err
	}
	return l.Content, nil
}
