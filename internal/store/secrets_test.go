package store_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/sealing"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// secretGroup is a group with one secret of every kind, each unique, and
// a plain environment value.
type secretGroup struct {
	g       types.ContainerGroup
	secrets []string
	plain   string
}

func newSecretGroup(t *testing.T, name string) secretGroup {
	t.Helper()
	u := func(what string) string { return what + "-" + rand.Text() }
	sg := secretGroup{plain: u("plain")}
	env, initEnv, file, pw := u("env"), u("initenv"), u("file"), u("password")
	sg.secrets = []string{env, initEnv, file, pw}
	sg.g = types.ContainerGroup{
		Subscription: "sub", ResourceGroup: "rg", Name: name, UID: "uid-" + name,
		Spec: types.GroupSpec{
			InitContainers: []types.Container{{Name: "init", Env: []types.EnvVar{{Name: "I", Value: initEnv, Secure: true}}}},
			Containers: []types.Container{{Name: "app", Env: []types.EnvVar{
				{Name: "PLAIN", Value: sg.plain},
				{Name: "SECRET", Value: env, Secure: true},
				{Name: "EMPTY", Value: "", Secure: true},
			}}},
			Volumes:    []types.Volume{{Name: "creds", Secret: map[string][]byte{"token": []byte(file)}}},
			Registries: []types.RegistryCredential{{Server: "reg.example", Username: "u", Password: pw}},
		},
	}
	return sg
}

func newSealKey(t *testing.T) *sealing.Key {
	t.Helper()
	k, err := sealing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawValue is what etcd holds at the store key.
func rawValue(ctx context.Context, t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	resp, err := c.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get %s: %v (%d values)", key, err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}

// assertSealed checks that the raw record holds no secret, in plain or
// base64 form, and does hold the plain value.
func (sg secretGroup) assertSealed(t *testing.T, raw string) {
	t.Helper()
	for _, s := range sg.secrets {
		if strings.Contains(raw, s) || strings.Contains(raw, base64.StdEncoding.EncodeToString([]byte(s))) {
			t.Errorf("stored record holds the secret %q: %s", s, raw)
		}
	}
	if !strings.Contains(raw, sg.plain) {
		t.Errorf("stored record lacks the plain value %q: %s", sg.plain, raw)
	}
	if !strings.Contains(raw, "berth:aesgcm:v1:") {
		t.Errorf("stored record holds no sealed value: %s", raw)
	}
}

func (sg secretGroup) assertOpened(t *testing.T, what string, got types.ContainerGroup) {
	t.Helper()
	if !reflect.DeepEqual(got, sg.g) {
		t.Errorf("%s = %+v\nwant %+v", what, got, sg.g)
	}
}

// TestStore_SealsSecrets: with a key, the secrets of a group are sealed
// in etcd on every write path and open on every read path; the caller's
// value is left plain.
func TestStore_SealsSecrets(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	ctx := t.Context()
	key := newSealKey(t)
	s := store.New(c, "/seal/", store.WithKey(key))
	groups := store.NewTyped[types.ContainerGroup](s, "groups/")
	watch := groups.Watch(ctx, 0)

	created := newSecretGroup(t, "created")
	before := fmt.Sprintf("%+v", created.g)
	rev, err := groups.Create(ctx, "created", created.g)
	if err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprintf("%+v", created.g); after != before {
		t.Errorf("Create changed the caller's group:\n%s\nwas\n%s", after, before)
	}
	created.assertSealed(t, rawValue(ctx, t, c, "/seal/groups/created"))

	got, _, err := groups.Get(ctx, "created")
	if err != nil {
		t.Fatal(err)
	}
	created.assertOpened(t, "get", got)

	select {
	case ev := <-watch:
		var g types.ContainerGroup
		if err := ev.Decode(&g); err != nil {
			t.Fatalf("decode watch event %q: %v", ev.Key, err)
		}
		created.assertOpened(t, "watch event", g)
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}

	updated := newSecretGroup(t, "created")
	if _, err := groups.Update(ctx, "created", updated.g, rev); err != nil {
		t.Fatal(err)
	}
	updated.assertSealed(t, rawValue(ctx, t, c, "/seal/groups/created"))

	put := newSecretGroup(t, "put")
	if _, err := groups.Put(ctx, "put", put.g); err != nil {
		t.Fatal(err)
	}
	put.assertSealed(t, rawValue(ctx, t, c, "/seal/groups/put"))

	committed := newSecretGroup(t, "committed")
	if _, err := s.Commit(ctx, store.OpCreate("groups/committed", committed.g)); err != nil {
		t.Fatal(err)
	}
	committed.assertSealed(t, rawValue(ctx, t, c, "/seal/groups/committed"))

	items, _, err := groups.List(ctx)
	if err != nil || len(items) != 3 {
		t.Fatalf("list = %d items, %v; want 3", len(items), err)
	}
	for _, it := range items {
		want := map[string]secretGroup{"created": updated, "put": put, "committed": committed}[it.Key]
		want.assertOpened(t, "list item "+it.Key, it.Value)
	}
	kvs, _, err := s.List(ctx, "groups/")
	if err != nil || len(kvs) != 3 {
		t.Fatalf("raw list = %d values, %v; want 3", len(kvs), err)
	}
	var g types.ContainerGroup
	if err := kvs[0].Decode(&g); err != nil { // "committed"
		t.Fatal(err)
	}
	committed.assertOpened(t, "decoded list value", g)
}

// TestStore_SealingAcrossKeys: what a server with another key, or with
// none, makes of sealed and plain records.
func TestStore_SealingAcrossKeys(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	ctx := t.Context()
	key, other := newSealKey(t), newSealKey(t)

	t.Run("a server without a key fails the read of a sealed group", func(t *testing.T) {
		sg := newSecretGroup(t, "g")
		mustCreate(ctx, t, store.New(c, "/nokey/", store.WithKey(key)), "groups/g", sg.g)
		plainStore := store.New(c, "/nokey/")
		g := sg.g
		_, err := plainStore.Get(ctx, "groups/g", &g)
		if !errors.Is(err, sealing.ErrKeyUnavailable) || !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("get = %v, want ErrKeyUnavailable and a failed precondition", err)
		}
		if !strings.Contains(err.Error(), key.ID()) || !strings.Contains(err.Error(), "--encryption-key-file") || !strings.Contains(err.Error(), `"groups/g"`) {
			t.Errorf("error %q does not name the key, the flag and the record", err)
		}
		if !reflect.ValueOf(g).IsZero() {
			t.Errorf("the failed get left a value behind: %+v", g)
		}
		if _, _, err := store.NewTyped[types.ContainerGroup](plainStore, "groups/").List(ctx); !errors.Is(err, sealing.ErrKeyUnavailable) {
			t.Errorf("list = %v, want ErrKeyUnavailable", err)
		}
	})

	t.Run("a server with another key fails the read and names both keys", func(t *testing.T) {
		sg := newSecretGroup(t, "g")
		mustCreate(ctx, t, store.New(c, "/otherkey/", store.WithKey(key)), "groups/g", sg.g)
		var g types.ContainerGroup
		_, err := store.New(c, "/otherkey/", store.WithKey(other)).Get(ctx, "groups/g", &g)
		if !errors.Is(err, sealing.ErrKeyUnavailable) || !strings.Contains(err.Error(), key.ID()) || !strings.Contains(err.Error(), other.ID()) {
			t.Fatalf("get = %v, want ErrKeyUnavailable naming keys %s and %s", err, key.ID(), other.ID())
		}
	})

	t.Run("a record written before the key reads with it and is sealed on its next write", func(t *testing.T) {
		sg := newSecretGroup(t, "g")
		mustCreate(ctx, t, store.New(c, "/upgrade/"), "groups/g", sg.g)
		raw := rawValue(ctx, t, c, "/upgrade/groups/g")
		if !strings.Contains(raw, sg.secrets[0]) {
			t.Fatalf("without a key the secret is not stored plain: %s", raw)
		}
		keyed := store.New(c, "/upgrade/", store.WithKey(key))
		var g types.ContainerGroup
		rev, err := keyed.Get(ctx, "groups/g", &g)
		if err != nil {
			t.Fatal(err)
		}
		sg.assertOpened(t, "get", g)
		if _, err := keyed.Update(ctx, "groups/g", g, rev); err != nil {
			t.Fatal(err)
		}
		sg.assertSealed(t, rawValue(ctx, t, c, "/upgrade/groups/g"))
	})

	t.Run("a sealed value copied into another record does not open", func(t *testing.T) {
		sg := newSecretGroup(t, "a")
		keyed := store.New(c, "/moved/", store.WithKey(key))
		mustCreate(ctx, t, keyed, "groups/a", sg.g)
		if _, err := c.Put(ctx, "/moved/groups/b", rawValue(ctx, t, c, "/moved/groups/a")); err != nil {
			t.Fatal(err)
		}
		var g types.ContainerGroup
		if _, err := keyed.Get(ctx, "groups/b", &g); !errdefs.IsDataLoss(err) {
			t.Fatalf("get of the copy = %v, want data loss", err)
		}
	})

	t.Run("without a key a secret that looks sealed is kept as it is", func(t *testing.T) {
		sg := newSecretGroup(t, "g")
		lookalike := "berth:aesgcm:v1:" + key.ID() + ":" + base64.StdEncoding.EncodeToString([]byte("x"))
		sg.g.Spec.Containers[0].Env[1].Value = lookalike
		plainStore := store.New(c, "/lookalike/")
		mustCreate(ctx, t, plainStore, "groups/g", sg.g)
		for _, s := range []*store.Store{plainStore, store.New(c, "/lookalike/", store.WithKey(key))} {
			var g types.ContainerGroup
			if _, err := s.Get(ctx, "groups/g", &g); err != nil {
				t.Fatal(err)
			}
			sg.assertOpened(t, "get", g)
		}
	})
}
