package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ConfigEnv names the environment variable that points at the config file.
const ConfigEnv = "BERTH_CONFIG"

// DefaultSubscription is the subscription used when neither a flag nor the
// config names one. A self-hosted Berth has no subscriptions to choose from,
// so one fixed id keeps a fresh install usable without setup.
const DefaultSubscription = "00000000-0000-0000-0000-000000000000"

// DefaultLocation is the location of resources created without one.
const DefaultLocation = "westus"

// ErrNoConfig is returned (wrapped) when no config file exists yet.
var ErrNoConfig = errors.New("no berth config")

// Config is the CLI's config file: the server's client.json (endpoint, CA
// file, token) plus optional defaults, as `az configure --defaults` keeps them.
type Config struct {
	Endpoint string `json:"endpoint"`
	// Endpoints are more servers of the same cluster (same CA, same
	// token), tried in order after Endpoint when it cannot be reached.
	// Endpoint stays the first so that a config written for one server
	// keeps working.
	Endpoints []string `json:"endpoints,omitempty"`
	CAFile    string   `json:"caFile"`
	Token     string   `json:"token"`
	Defaults  Defaults `json:"defaults,omitzero"`
}

// Defaults are the values commands use when their flags are not given.
type Defaults struct {
	Subscription string `json:"subscription,omitempty"`
	Group        string `json:"group,omitempty"`
	Location     string `json:"location,omitempty"`
}

// Subscription returns the default subscription, or DefaultSubscription.
func (c *Config) Subscription() string {
	if c.Defaults.Subscription != "" {
		return c.Defaults.Subscription
	}
	return DefaultSubscription
}

// Location returns the default location, or DefaultLocation.
func (c *Config) Location() string {
	if c.Defaults.Location != "" {
		return c.Defaults.Location
	}
	return DefaultLocation
}

// Validate checks that the connection settings are complete and sane.
func (c *Config) Validate() error {
	var missing []string
	if c.Endpoint == "" {
		missing = append(missing, "endpoint")
	}
	if c.CAFile == "" {
		missing = append(missing, "caFile")
	}
	if c.Token == "" {
		missing = append(missing, "token")
	}
	if len(missing) > 0 {
		return fmt.Errorf("config lacks %s", strings.Join(missing, ", "))
	}
	_, err := c.endpointURLs()
	return err
}

// endpointURLs parses Endpoint and Endpoints, in that order, each an
// https:// URL without a trailing slash. A host listed twice is kept once
// (a server may list itself among the others): requests are matched to
// their endpoint by host.
func (c *Config) endpointURLs() ([]*url.URL, error) {
	var out []*url.URL
	seen := map[string]bool{}
	for i, ep := range append([]string{c.Endpoint}, c.Endpoints...) {
		u, err := url.Parse(strings.TrimRight(ep, "/"))
		if err != nil || u.Scheme != "https" || u.Host == "" {
			if i == 0 {
				return nil, fmt.Errorf("config endpoint %q is not an https:// URL", ep)
			}
			return nil, fmt.Errorf("config endpoints[%d] %q is not an https:// URL", i-1, ep)
		}
		key := strings.ToLower(u.Host)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, u)
	}
	return out, nil
}

// ConfigPath returns $BERTH_CONFIG, or ~/.berth/config.json.
func ConfigPath() (string, error) {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory for the berth config (set %s): %w", ConfigEnv, err)
	}
	return filepath.Join(home, ".berth", "config.json"), nil
}

// LoadConfig reads the config file at path. A missing file is ErrNoConfig.
// A relative caFile is taken relative to the config file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoConfig, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	if c.CAFile != "" && !filepath.IsAbs(c.CAFile) {
		c.CAFile = filepath.Join(filepath.Dir(path), c.CAFile)
	}
	return &c, nil
}

// SaveConfig writes c to path (mode 0600, since it holds the token),
// through a rename so that a reader never sees half a file.
func SaveConfig(path string, c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install config: %w", err)
	}
	return nil
}
