package config

import (
	"strings"
	"testing"
)

func TestServer_ValidateDNS(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Server)
		wantErr string
	}{
		{"the DNS server may be disabled", func(c *Server) { c.DNSListen = "" }, ""},
		{"upstreams with and without ports", func(c *Server) {
			c.DNSForward = []string{"192.0.2.1", "192.0.2.2:5353", "2001:db8::1", "[2001:db8::2]:53"}
		}, ""},
		{"no upstreams", func(c *Server) { c.DNSForward = []string{"none"} }, ""},
		{"a zone with a trailing dot", func(c *Server) { c.DNSZone = "Berth.Example." }, ""},
		{"a tenant id", func(c *Server) { c.TenantID = "0f9c1b2e-7a41-4a55-9d3e-2b1c4c1d9e10" }, ""},
		{"dns listen needs a port", func(c *Server) { c.DNSListen = "127.0.0.1" }, "--dns-listen"},
		{"an empty zone", func(c *Server) { c.DNSZone = "" }, "--dns-zone"},
		{"a zone with an empty label", func(c *Server) { c.DNSZone = "berth..internal" }, "--dns-zone"},
		{"a zone with an underscore", func(c *Server) { c.DNSZone = "berth_dns.internal" }, "--dns-zone"},
		{"an upstream by name", func(c *Server) { c.DNSForward = []string{"dns.example"} }, "--dns-forward"},
		{"none with an upstream", func(c *Server) { c.DNSForward = []string{"none", "192.0.2.1"} }, "--dns-forward"},
		{"a tenant id with a slash", func(c *Server) { c.TenantID = "a/b" }, "--tenant-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultServer()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}
