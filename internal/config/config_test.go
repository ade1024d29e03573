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
		// Several servers.
		{"cluster init is valid", func(c *Server) { c.ClusterInit = true }, ""},
		{"join is valid with token and CA", func(c *Server) {
			c.JoinURL, c.JoinToken, c.CAFile = "https://10.0.0.1:8443", "abc123.0123456789abcdef", "/ca.crt"
		}, ""},
		{"join needs a token", func(c *Server) { c.JoinURL, c.CAFile = "https://10.0.0.1:8443", "/ca.crt" }, "--join-token"},
		{"join needs the CA", func(c *Server) { c.JoinURL, c.JoinToken = "https://10.0.0.1:8443", "t" }, "--ca-file"},
		{"join is an https URL", func(c *Server) { c.JoinURL, c.JoinToken, c.CAFile = "10.0.0.1:8443", "t", "/ca" }, "--join"},
		{"init and join exclude each other", func(c *Server) {
			c.ClusterInit, c.JoinURL, c.JoinToken, c.CAFile = true, "https://10.0.0.1:8443", "t", "/ca"
		}, "exclude each other"},
		{"external etcd has its own members", func(c *Server) {
			c.ClusterInit, c.EtcdEndpoints = true, []string{"https://10.0.0.1:2379"}
		}, "--etcd-endpoints excludes"},
		{"etcd TLS needs external etcd", func(c *Server) { c.EtcdCAFile = "/ca" }, "need --etcd-endpoints"},
		{"etcd cert needs its key", func(c *Server) {
			c.EtcdEndpoints, c.EtcdCertFile = []string{"https://10.0.0.1:2379"}, "/c.crt"
		}, "go together"},
		{"external etcd with TLS is valid", func(c *Server) {
			c.EtcdEndpoints, c.EtcdCAFile, c.EtcdCertFile, c.EtcdKeyFile = []string{"https://10.0.0.1:2379"}, "/ca", "/c.crt", "/c.key"
		}, ""},
		{"restore excludes join", func(c *Server) {
			c.RestoreSnapshot, c.JoinURL, c.JoinToken, c.CAFile = "/s.db", "https://10.0.0.1:8443", "t", "/ca"
		}, "excludes --join"},
		{"restore excludes external etcd", func(c *Server) {
			c.RestoreSnapshot, c.EtcdEndpoints = "/s.db", []string{"https://10.0.0.1:2379"}
		}, "--restore-snapshot"},
		{"server name is a DNS label", func(c *Server) { c.ServerName = "Server_1" }, "--server-name"},
		{"advertise address is an IP", func(c *Server) { c.AdvertiseAddress = "0.0.0.0" }, "--advertise-address"},
		{"peer port is a port", func(c *Server) { c.EtcdPeerPort = 70000 }, "--etcd-peer-port"},
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
