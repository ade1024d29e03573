package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	adminToken = "admin-token-0123456789"
	aliceToken = "alice-token-0123456789"
)

func TestTokens_Authenticate(t *testing.T) {
	tokens, err := NewTokens(adminToken, []Principal{{Name: "alice", Token: aliceToken, Subscriptions: []string{"SUB-A"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		token    string
		wantName string
		canA     bool
		canB     bool
	}{
		{"the admin may use every subscription", adminToken, AdminName, true, true},
		{"a principal may use its subscriptions, whatever their case", aliceToken, "alice", true, false},
		{"an unknown token is nobody", "nobody-0123456789", "", false, false},
		{"a prefix of a token is nobody", aliceToken[:10], "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := tokens.Authenticate(tt.token)
			if !ok {
				if tt.wantName != "" {
					t.Fatalf("token not recognised, want %s", tt.wantName)
				}
				return
			}
			if p.Name != tt.wantName {
				t.Fatalf("got principal %q, want %q", p.Name, tt.wantName)
			}
			if got := p.CanAccess("sub-a"); got != tt.canA {
				t.Errorf("CanAccess(sub-a) = %v, want %v", got, tt.canA)
			}
			if got := p.CanAccess("sub-b"); got != tt.canB {
				t.Errorf("CanAccess(sub-b) = %v, want %v", got, tt.canB)
			}
		})
	}
}

func TestNewTokens_Refuses(t *testing.T) {
	tests := []struct {
		name       string
		principals []Principal
		want       string
	}{
		{"no name", []Principal{{Token: aliceToken, Subscriptions: []string{"a"}}}, "no name"},
		{"a short token", []Principal{{Name: "bob", Token: "short", Subscriptions: []string{"a"}}}, "shorter than"},
		{"no subscriptions", []Principal{{Name: "bob", Token: aliceToken}}, "no subscriptions"},
		{"the admin's name", []Principal{{Name: AdminName, Token: aliceToken, Subscriptions: []string{"a"}}}, "appears twice"},
		{"the admin's token", []Principal{{Name: "bob", Token: adminToken, Subscriptions: []string{"a"}}}, "used by another"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTokens(adminToken, tt.principals)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(good, []byte(`{"principals":[{"name":"alice","token":"`+aliceToken+`","subscriptions":["a","b"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "alice" || len(ps[0].Subscriptions) != 2 {
		t.Fatalf("got %+v", ps)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"principals":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(bad); err == nil {
		t.Fatal("a truncated file was accepted")
	}
}
