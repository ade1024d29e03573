// Package client is a Go SDK for Berth's REST API, the ARM-compatible API of
// Microsoft.ContainerInstance at api-version 2023-05-01. It speaks only HTTP
// and the wire model of api/v20230501; the berth CLI is built on it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// ResourceGroupAPIVersion is the api-version sent on resource group calls;
// the server accepts any, as ARM's Microsoft.Resources does.
const ResourceGroupAPIVersion = "2021-04-01"

// maxBody bounds how much of a response is read; logs are the largest
// answers and the server caps them at 4 MB.
const maxBody = 16 << 20

// Client calls a Berth cluster's API with the admin token: the config's
// endpoints, failing over from one to the next when a server cannot be
// reached (see Transport).
type Client struct {
	// endpoint is the primary endpoint requests are built on; the
	// transport sends them on to whichever endpoint answers.
	endpoint  *url.URL
	transport *Transport
	token     string
	tls       *tls.Config
	http      *http.Client
	// PollInterval is how often long-running operations are polled when
	// the server gives no Retry-After.
	PollInterval time.Duration
}

// New returns a client for cfg's endpoints that trusts cfg's CA file.
func New(cfg *Config) (*Client, error) {
	t, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{
		endpoint:     t.endpoints[0],
		transport:    t,
		token:        cfg.Token,
		tls:          t.TLSConfig(),
		http:         &http.Client{Transport: t},
		PollInterval: time.Second,
	}, nil
}

// GroupRef names a container group.
type GroupRef struct {
	Subscription  string
	ResourceGroup string
	Name          string
}

// Path is the group's ARM resource path.
func (r GroupRef) Path() string {
	return resourceGroupPath(r.Subscription, r.ResourceGroup) +
		"/providers/Microsoft.ContainerInstance/containerGroups/" + url.PathEscape(r.Name)
}

func resourceGroupPath(sub, rg string) string {
	return "/subscriptions/" + url.PathEscape(sub) + "/resourceGroups/" + url.PathEscape(rg)
}

// request is one API call.
type request struct {
	method     string
	path       string // below the endpoint, or an absolute URL on its host
	apiVersion string
	query      url.Values
	body       any // JSON-encoded when not nil
}

// response is a successful answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends req and returns the response, or an *APIError for any status
// of 400 and above.
func (c *Client) do(ctx context.Context, req request) (*response, error) {
	u, err := c.resolve(req.path)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	for k, vs := range req.query {
		q[k] = vs
	}
	if req.apiVersion != "" {
		q.Set("api-version", req.apiVersion)
	}
	u.RawQuery = q.Encode()
	var body io.Reader
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Authorization", "Bearer "+c.token)
	hr.Header.Set("Accept", "application/json")
	if req.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.method, u.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", req.method, u.Path, err)
	}
	if resp.StatusCode >= 400 {
		return nil, apiError(resp.StatusCode, resp.Header, b)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// resolve turns a path into a URL on the primary endpoint. Absolute URLs
// (operation status URLs the server hands out) must be on one of the
// endpoints' hosts: the token is never sent anywhere else.
func (c *Client) resolve(p string) (*url.URL, error) {
	if strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://") {
		u, err := url.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("parse URL %q: %w", p, err)
		}
		if !c.transport.Owns(u) {
			return nil, fmt.Errorf("refusing to send the token to %s, which is not one of the endpoints", u.Host)
		}
		return u, nil
	}
	u := *c.endpoint
	u.Path = strings.TrimRight(c.endpoint.Path, "/") + p
	if unescaped, err := url.PathUnescape(u.Path); err == nil && unescaped != u.Path {
		u.RawPath = u.Path
		u.Path = unescaped
	}
	return &u, nil
}

// decodeJSON decodes b into v, naming what it could not read.
func decodeJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// CreateResourceGroup creates or updates a resource group.
func (c *Client) CreateResourceGroup(ctx context.Context, sub, name string, rg armv1.ResourceGroup) (*armv1.ResourceGroup, error) {
	resp, err := c.do(ctx, request{method: http.MethodPut, path: resourceGroupPath(sub, name), apiVersion: ResourceGroupAPIVersion, body: rg})
	if err != nil {
		return nil, err
	}
	var out armv1.ResourceGroup
	return &out, decodeJSON(resp.body, &out)
}

// GetResourceGroup reads a resource group.
func (c *Client) GetResourceGroup(ctx context.Context, sub, name string) (*armv1.ResourceGroup, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: resourceGroupPath(sub, name), apiVersion: ResourceGroupAPIVersion})
	if err != nil {
		return nil, err
	}
	var out armv1.ResourceGroup
	return &out, decodeJSON(resp.body, &out)
}

// ListResourceGroups lists the subscription's resource groups, all pages.
func (c *Client) ListResourceGroups(ctx context.Context, sub string) ([]armv1.ResourceGroup, error) {
	out := []armv1.ResourceGroup{}
	next := "/subscriptions/" + url.PathEscape(sub) + "/resourcegroups"
	version := ResourceGroupAPIVersion
	for next != "" {
		resp, err := c.do(ctx, request{method: http.MethodGet, path: next, apiVersion: version})
		if err != nil {
			return nil, err
		}
		var page armv1.ResourceGroupList
		if err := decodeJSON(resp.body, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		next, version = page.NextLink, "" // a next link carries its own query
	}
	return out, nil
}

// DeleteResourceGroup deletes a resource group and its container groups,
// waiting for the deletion when the server runs it asynchronously.
func (c *Client) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	resp, err := c.do(ctx, request{method: http.MethodDelete, path: resourceGroupPath(sub, name), apiVersion: ResourceGroupAPIVersion})
	if err != nil {
		return err
	}
	if op := operationFrom(resp); op != nil {
		_, err := c.Wait(ctx, op, nil)
		return err
	}
	return nil
}
