// Package auth maps bearer tokens to principals and decides which
// subscriptions a principal may act on.
//
// Berth has two kinds of principal: the admin, whose token the server
// creates on first start and which may use every subscription, and the
// principals of a tokens file (`berth server --tokens-file`), each limited
// to the subscriptions the file lists. This is the static-token model of
// kube-apiserver's --token-auth-file: simple to operate, and enough for one
// installation with several tenants.
package auth

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

// AdminName is the name of the admin principal.
const AdminName = "admin"

// minTokenLength keeps guessable tokens out of a tokens file.
const minTokenLength = 16

// Principal is who a token belongs to.
type Principal struct {
	Name  string `json:"name"`
	Token string `json:"token"`
	// Subscriptions the principal may use; subscription ids are compared
	// without regard to case, as ARM does.
	Subscriptions []string `json:"subscriptions"`
	// Admin may use every subscription.
	Admin bool `json:"-"`
}

// CanAccess reports whether p may act on subscription sub.
func (p *Principal) CanAccess(sub string) bool {
	if p.Admin {
		return true
	}
	for _, s := range p.Subscriptions {
		if strings.EqualFold(s, sub) {
			return true
		}
	}
	return false
}

// File is the shape of a tokens file:
//
//	{"principals": [{"name": "alice", "token": "…", "subscriptions": ["…"]}]}
type File struct {
	Principals []Principal `json:"principals"`
}

// LoadFile reads and validates a tokens file.
func LoadFile(path string) ([]Principal, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w: %w", path, errdefs.ErrInvalidArgument, err)
	}
	return f.Principals, nil
}

// Tokens finds the principal of a bearer token.
type Tokens struct {
	// Keyed by the token's SHA-256, so that a lookup's timing tells nothing
	// about how much of a guessed token was right.
	byHash map[[sha256.Size]byte]*Principal
}

// NewTokens builds the lookup from the admin token and the principals of a
// tokens file. Names and tokens must be unique, tokens long enough, and
// every non-admin principal needs at least one subscription. (The admin
// token is the server's own, random and long; tests may pass a short one.)
func NewTokens(adminToken string, principals []Principal) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]*Principal{}}
	names := map[string]bool{}
	add := func(p Principal) error {
		switch {
		case p.Name == "":
			return fmt.Errorf("a principal has no name: %w", errdefs.ErrInvalidArgument)
		case names[p.Name]:
			return fmt.Errorf("principal %q appears twice: %w", p.Name, errdefs.ErrInvalidArgument)
		case p.Token == "":
			return fmt.Errorf("principal %q has no token: %w", p.Name, errdefs.ErrInvalidArgument)
		case !p.Admin && len(p.Token) < minTokenLength:
			return fmt.Errorf("token of principal %q is shorter than %d characters: %w", p.Name, minTokenLength, errdefs.ErrInvalidArgument)
		case !p.Admin && len(p.Subscriptions) == 0:
			return fmt.Errorf("principal %q has no subscriptions: %w", p.Name, errdefs.ErrInvalidArgument)
		}
		h := sha256.Sum256([]byte(p.Token))
		if _, dup := t.byHash[h]; dup {
			return fmt.Errorf("token of principal %q is used by another principal: %w", p.Name, errdefs.ErrInvalidArgument)
		}
		names[p.Name] = true
		t.byHash[h] = &p
		return nil
	}
	if err := add(Principal{Name: AdminName, Token: adminToken, Admin: true}); err != nil {
		return nil, err
	}
	for _, p := range principals {
		p.Admin = false
		if err := add(p); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Authenticate returns the principal whose token this is.
func (t *Tokens) Authenticate(token string) (*Principal, bool) {
	p, ok := t.byHash[sha256.Sum256([]byte(token))]
	return p, ok
}
