// Package join keeps the tokens that let agents join the cluster. A token
// reads "<id>.<secret>", like a kubeadm bootstrap token: the id is public
// and names the stored record, the secret is stored only as its SHA-256.
// A token is good for one join before it expires; marking it used is a
// revision-checked write, so two agents racing with one token cannot both
// get in.
package join

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Token limits.
const (
	// MaxTTL is the longest a token may live: a leaked one is good for a
	// week at most.
	MaxTTL = 7 * 24 * time.Hour
	// DefaultTTL is what the API uses when a request names none.
	DefaultTTL = time.Hour

	idLen     = 6
	secretLen = 16
	alphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

var (
	tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	idRE    = regexp.MustCompile(`^[a-z0-9]{6}$`)
)

// Request is the body of POST /berth/v1/join.
type Request struct {
	Token string `json:"token"`
	Node  string `json:"node"`
	// CSR is the node's certificate request, DER in standard base64.
	CSR string `json:"csr"`
	// Addresses are the node's IPs, for its certificate's names.
	Addresses []string `json:"addresses,omitempty"`
}

// Response is the answer of a join: the node's certificate and the CA
// that signed it, both PEM.
type Response struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
}

// Tokens are the join tokens in the store.
type Tokens struct {
	tokens store.Typed[types.JoinToken]
	now    func() time.Time
}

// New returns the tokens kept in st; now is the clock (nil: time.Now).
func New(st *store.Store, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{tokens: store.NewTyped[types.JoinToken](st, types.PrefixJoinTokens), now: now}
}

// Create makes a token for role that lives for ttl (more than zero, at
// most MaxTTL) and returns it: the only time its secret is seen.
func (t *Tokens) Create(ctx context.Context, role types.JoinRole, ttl time.Duration, description string) (string, types.JoinToken, error) {
	if ttl <= 0 || ttl > MaxTTL {
		return "", types.JoinToken{}, fmt.Errorf("join token ttl %s: want more than 0 and at most %s: %w", ttl, MaxTTL, errdefs.ErrInvalidArgument)
	}
	now := t.now().UTC()
	for attempt := 0; ; attempt++ {
		id, err := randomString(idLen)
		if err != nil {
			return "", types.JoinToken{}, err
		}
		secret, err := randomString(secretLen)
		if err != nil {
			return "", types.JoinToken{}, err
		}
		jt := types.JoinToken{ID: id, Role: role, SecretHash: hashSecret(secret), Description: description,
			CreatedAt: now, ExpiresAt: now.Add(ttl)}
		_, err = t.tokens.Create(ctx, id, jt)
		if errdefs.IsAlreadyExists(err) && attempt < 5 {
			continue // 36^6 ids: a clash is rare, another draw fixes it
		}
		if err != nil {
			return "", types.JoinToken{}, fmt.Errorf("create join token: %w", err)
		}
		return id + "." + secret, jt, nil
	}
}

// List returns every token, used and expired ones too, sorted by id.
func (t *Tokens) List(ctx context.Context) ([]types.JoinToken, error) {
	items, _, err := t.tokens.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	out := make([]types.JoinToken, 0, len(items))
	for _, it := range items {
		out = append(out, it.Value)
	}
	return out, nil
}

// Delete removes the token id; an unknown one is errdefs.ErrNotFound.
func (t *Tokens) Delete(ctx context.Context, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("join token id %q: want %d lower-case letters or digits: %w", id, idLen, errdefs.ErrInvalidArgument)
	}
	if err := t.tokens.Delete(ctx, id, 0); err != nil {
		return fmt.Errorf("delete join token %s: %w", id, err)
	}
	return nil
}

// Consume spends token on the join of node, or of the server of that
// name for role JoinServer; a token of the other role is refused. Every refusal is
// errdefs.ErrUnauthenticated with a message that says why, except that a
// malformed, unknown or wrong token is only "invalid": nothing tells a
// guesser which ids exist.
func (t *Tokens) Consume(ctx context.Context, role types.JoinRole, token, node string) error {
	if !tokenRE.MatchString(token) {
		return errInvalid
	}
	id, secret, _ := strings.Cut(token, ".")
	for attempt := 0; ; attempt++ {
		jt, rev, err := t.tokens.Get(ctx, id)
		if errdefs.IsNotFound(err) {
			return errInvalid
		}
		if err != nil {
			return fmt.Errorf("read join token %s: %w", id, err)
		}
		if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(jt.SecretHash)) != 1 {
			return errInvalid
		}
		if jt.Role != role {
			return &tokenError{fmt.Sprintf("join token %s is for joining a %s, not a %s", id, roleName(jt.Role), roleName(role))}
		}
		if jt.UsedBy != "" {
			return &tokenError{fmt.Sprintf("join token %s was already used by %s %s", id, roleName(jt.Role), jt.UsedBy)}
		}
		now := t.now().UTC()
		if !now.Before(jt.ExpiresAt) {
			return &tokenError{fmt.Sprintf("join token %s expired at %s", id, jt.ExpiresAt.Format(time.RFC3339))}
		}
		jt.UsedBy, jt.UsedAt = node, now
		_, err = t.tokens.Update(ctx, id, jt, rev)
		if errdefs.IsConflict(err) && attempt < 5 {
			continue // changed meanwhile, likely by another join: read again
		}
		if errdefs.IsNotFound(err) {
			return errInvalid // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("mark join token %s used: %w", id, err)
		}
		return nil
	}
}

// ID is the public half of token, "" when it is not shaped like one.
func ID(token string) string {
	if !tokenRE.MatchString(token) {
		return ""
	}
	id, _, _ := strings.Cut(token, ".")
	return id
}

// tokenError is a refused token: its message is for the agent's operator,
// its class errdefs.ErrUnauthenticated.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return e.msg }
func (e *tokenError) Unwrap() error { return errdefs.ErrUnauthenticated }

var errInvalid error = &tokenError{"join token is invalid"}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		r, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("join token: %w", err)
		}
		b[i] = alphabet[r.Int64()]
	}
	return string(b), nil
}

func roleName(r types.JoinRole) string {
	if r == types.JoinServer {
		return "server"
	}
	return "node"
}
