package config

import (
	"strings"
	"testing"
)

func TestServer_Validate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Server)
		wantErr string
	}{
		{"defaults are valid", func(*Server) {}, ""},
		{"listen needs a port", func(c *Server) { c.Listen = "127.0.0.1" }, "--listen"},
		{"registry is a host, not a URL", func(c *Server) { c.InsecureRegistries = []string{"http://r:5000/x"} }, "--insecure-registry"},
		{"etcd endpoints are URLs", func(c *Server) { c.EtcdEndpoints = []string{"127.0.0.1:2379"} }, "--etcd-endpoints"},
		{"bridge names fit the kernel's 15 characters", func(c *Server) { c.Bridge = "a-very-long-bridge-name" }, "--bridge-name"},
		{"subnet must be IPv4 CIDR", func(c *Server) { c.Subnet = "10.0.0.1" }, "--subnet"},
		{"empty data dir", func(c *Server) { c.DataDir = "" }, "--data-dir"},
		{"pprof listen needs a port", func(c *Server) { c.PprofListen = "127.0.0.1" }, "--pprof-listen"},
		{"pprof on loopback is valid", func(c *Server) { c.PprofListen = "127.0.0.1:6060" }, ""},
		{"isolation is runc or sandboxed", func(c *Server) { c.Isolation = "vm" }, "--isolation"},
		{"runc isolation is valid", func(c *Server) { c.Isolation = "runc" }, ""},
		{"kvm is not a runsc platform here", func(c *Server) { c.RunscPlatform = "kvm" }, "--runsc-platform"},
		{"ptrace is a runsc platform", func(c *Server) { c.RunscPlatform = "ptrace" }, ""},
		{"userns remap off", func(c *Server) { c.UserNSRemap = "off" }, ""},
		{"userns remap range", func(c *Server) { c.UserNSRemap = "100000:65536" }, ""},
		{"userns remap is auto, off or a range", func(c *Server) { c.UserNSRemap = "on" }, "--userns-remap"},
		{"userns remap range needs a size", func(c *Server) { c.UserNSRemap = "100000" }, "--userns-remap"},
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

// Groups are sandboxed unless the operator asks for runc (issue 7).
func TestDefaultServer_IsolationIsSandboxed(t *testing.T) {
	if got := DefaultServer().Isolation; got != "sandboxed" {
		t.Errorf("default --isolation = %q, want sandboxed", got)
	}
}
