package join

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// clock is a settable time for the tokens under test.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	c.set(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

var prefixSeq atomic.Int64

// newTokens returns tokens on a fresh prefix of cli's etcd, the raw view
// of their records and their clock.
func newTokens(cli *clientv3.Client) (*Tokens, store.Typed[types.JoinToken], *clock) {
	s := store.New(cli, fmt.Sprintf("/join-test-%d/", prefixSeq.Add(1)))
	c := newClock()
	return New(s, c.now), store.NewTyped[types.JoinToken](s, types.PrefixJoinTokens), c
}

var tokenShape = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

func TestTokens_Create(t *testing.T) {
	cli := etcdtest.NewClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		wantErr bool
	}{
		{"an hour is fine", time.Hour, false},
		{"a week is the most", MaxTTL, false},
		{"more than a week is refused", MaxTTL + time.Second, true},
		{"zero is refused", 0, true},
		{"a negative ttl is refused", -time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, raw, clk := newTokens(cli)
			tok, jt, err := tokens.Create(ctx, types.JoinNode, tc.ttl, "for node-a")
			if tc.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want invalid argument", err)
				}
				if items, _, _ := raw.List(ctx); len(items) != 0 {
					t.Errorf("a refused create stored %d tokens", len(items))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tokenShape.MatchString(tok) {
				t.Errorf("token %q is not <6>.<16> lower-case alphanumerics", tok)
			}
			id, secret, _ := strings.Cut(tok, ".")
			stored, _, err := raw.Get(ctx, id)
			if err != nil {
				t.Fatalf("token %s not stored under its id: %v", id, err)
			}
			if stored.ID != id || jt.ID != id || !stored.ExpiresAt.Equal(clk.now().Add(tc.ttl)) || stored.Description != "for node-a" {
				t.Errorf("stored %+v, returned %+v; want id %s, expiry now+%s", stored, jt, id, tc.ttl)
			}
			if stored.SecretHash == "" || strings.Contains(stored.SecretHash, secret) {
				t.Errorf("the stored record holds the secret or no hash: %+v", stored)
			}
		})
	}
}

func TestTokens_Consume(t *testing.T) {
	cli := etcdtest.NewClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// token turns the created token into the one presented; prepare
		// changes the world before the join.
		token   func(good string) string
		prepare func(t *testing.T, tokens *Tokens, good string, clk *clock)
		// made is the role the token is made for, joining the role that
		// joins with it.
		made, joining types.JoinRole
		wantMsg       string // "" for success
	}{
		{name: "a good token joins"},
		{name: "a server token joins a server", made: types.JoinServer, joining: types.JoinServer},
		{
			name: "a server token does not join a node", made: types.JoinServer, joining: types.JoinNode,
			wantMsg: `^join token [a-z0-9]{6} is for joining a server, not a node$`,
		},
		{
			name: "a node token does not join a server", made: types.JoinNode, joining: types.JoinServer,
			wantMsg: `^join token [a-z0-9]{6} is for joining a node, not a server$`,
		},
		{
			name:    "a malformed token is invalid",
			token:   func(string) string { return "not-a-token" },
			wantMsg: "^join token is invalid$",
		},
		{
			name:    "an upper-case token is malformed",
			token:   strings.ToUpper,
			wantMsg: "^join token is invalid$",
		},
		{
			name:    "an unknown id is invalid",
			token:   func(good string) string { return "zzzzzz" + good[6:] },
			wantMsg: "^join token is invalid$",
		},
		{
			name: "a wrong secret is invalid",
			token: func(good string) string {
				last := "a"
				if good[len(good)-1] == 'a' {
					last = "b"
				}
				return good[:len(good)-1] + last
			},
			wantMsg: "^join token is invalid$",
		},
		{
			name:    "an expired token is refused with its expiry",
			prepare: func(_ *testing.T, _ *Tokens, _ string, clk *clock) { clk.add(time.Hour) },
			wantMsg: `^join token [a-z0-9]{6} expired at 2026-01-02T04:04:05Z$`,
		},
		{
			name: "a used token is refused with the node that used it",
			prepare: func(t *testing.T, tokens *Tokens, good string, _ *clock) {
				if err := tokens.Consume(ctx, types.JoinNode, good, "node-first"); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: `^join token [a-z0-9]{6} was already used by node node-first$`,
		},
		{
			name: "a deleted token is invalid",
			prepare: func(t *testing.T, tokens *Tokens, good string, _ *clock) {
				if err := tokens.Delete(ctx, ID(good)); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "^join token is invalid$",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, raw, clk := newTokens(cli)
			good, _, err := tokens.Create(ctx, tc.made, time.Hour, "")
			if err != nil {
				t.Fatal(err)
			}
			if tc.prepare != nil {
				tc.prepare(t, tokens, good, clk)
			}
			presented := good
			if tc.token != nil {
				presented = tc.token(good)
			}
			before, _, _ := raw.List(ctx)
			err = tokens.Consume(ctx, tc.joining, presented, "node-a")
			after, _, _ := raw.List(ctx)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Consume: %v", err)
				}
				jt, _, err := raw.Get(ctx, ID(good))
				if err != nil {
					t.Fatal(err)
				}
				if jt.UsedBy != "node-a" || !jt.UsedAt.Equal(clk.now()) {
					t.Errorf("token not marked used by node-a now: %+v", jt)
				}
				return
			}
			if !errdefs.IsUnauthorized(err) {
				t.Fatalf("err = %v, want unauthenticated", err)
			}
			if !regexp.MustCompile(tc.wantMsg).MatchString(err.Error()) {
				t.Errorf("message %q does not match %s", err.Error(), tc.wantMsg)
			}
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("a refused join changed the tokens:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

// TestTokens_ConsumeRace has many agents join with one token at once:
// exactly one gets in, every other is told who used it.
func TestTokens_ConsumeRace(t *testing.T) {
	cli := etcdtest.NewClient(t)
	ctx := context.Background()
	for round := range 5 {
		tokens, raw, _ := newTokens(cli)
		tok, _, err := tokens.Create(ctx, types.JoinNode, time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = tokens.Consume(ctx, types.JoinNode, tok, fmt.Sprintf("node-%d", i))
			})
		}
		close(start)
		wg.Wait()
		var winners []int
		for i, err := range errs {
			switch {
			case err == nil:
				winners = append(winners, i)
			case !errdefs.IsUnauthorized(err) || !strings.Contains(err.Error(), "was already used by node"):
				t.Errorf("round %d: join %d: %v, want already used", round, i, err)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d joins won (%v), want 1", round, len(winners), winners)
		}
		jt, _, err := raw.Get(ctx, ID(tok))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("node-%d", winners[0]); jt.UsedBy != want {
			t.Errorf("round %d: token used by %q, the winner was %s", round, jt.UsedBy, want)
		}
	}
}

func TestTokens_ListDelete(t *testing.T) {
	cli := etcdtest.NewClient(t)
	ctx := context.Background()
	tokens, _, _ := newTokens(cli)
	var ids []string
	for i := range 3 {
		tok, _, err := tokens.Create(ctx, types.JoinNode, time.Hour, fmt.Sprint("token ", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ID(tok))
	}
	list, err := tokens.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("listed %d tokens, want 3", len(list))
	}
	if err := tokens.Delete(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	list, _ = tokens.List(ctx)
	for _, jt := range list {
		if jt.ID == ids[1] {
			t.Errorf("deleted token %s still listed", ids[1])
		}
	}
	if len(list) != 2 {
		t.Errorf("listed %d tokens after a delete, want 2", len(list))
	}
	for _, tc := range []struct {
		name  string
		id    string
		check func(error) bool
	}{
		{"deleting it again is not found", ids[1], errdefs.IsNotFound},
		{"an id of the wrong shape is invalid", "../nodes/x", errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tokens.Delete(ctx, tc.id); !tc.check(err) {
				t.Errorf("Delete(%q) = %v", tc.id, err)
			}
		})
	}
}

func TestID(t *testing.T) {
	for in, want := range map[string]string{
		"abc123.0123456789abcdef": "abc123",
		"abc123":                  "",
		"abc123.short":            "",
		"":                        "",
	} {
		if got := ID(in); got != want {
			t.Errorf("ID(%q) = %q, want %q", in, got, want)
		}
	}
	if errors.Is(errInvalid, errdefs.ErrNotFound) || !errdefs.IsUnauthorized(errInvalid) {
		t.Error("errInvalid is not classed unauthenticated alone")
	}
}
