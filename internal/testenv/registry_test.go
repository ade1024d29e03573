package testenv_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/imagebuild"
	"github.com/berth-dev/berth/internal/testenv"
)

func TestStartRegistry(t *testing.T) {
	testenv.RequireRoot(t)
	var reg *testenv.Registry
	t.Run("pushed images can be read back", func(t *testing.T) {
		reg = testenv.StartRegistry(t)
		for _, ref := range []string{testenv.PushHelloImage(t, reg), testenv.PushBusyboxImage(t, reg)} {
			r, err := name.ParseReference(ref, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(r)
			if err != nil {
				t.Fatalf("read %s back: %v", ref, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatalf("config of %s: %v", ref, err)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("%s: got platform %s/%s", ref, cf.OS, cf.Architecture)
			}
		}
		if want := reg.Addr + "/berth/hello:1"; testenv.PushHelloImage(t, reg) != want {
			t.Errorf("hello reference is not %s", want)
		}
	})
	if reg == nil {
		t.FailNow()
	}
	t.Run("cleanup stopped the registry", func(t *testing.T) {
		if c, err := net.DialTimeout("tcp", reg.Addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", reg.Addr)
		}
	})
}

func TestStartRegistryWithAuth(t *testing.T) {
	testenv.RequireRoot(t)
	reg := testenv.StartRegistryWithAuth(t, "alice", "s3cret")
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/x", Data: []byte("x")}}, imagebuild.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("private/x:1")
	ctx := context.Background()

	t.Run("anonymous requests are refused", func(t *testing.T) {
		resp, err := http.Get("http://" + reg.Addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got %s, want 401", resp.Status)
		}
		if err := imagebuild.Push(ctx, img, ref, true, nil); err == nil {
			t.Errorf("anonymous push succeeded")
		}
	})
	t.Run("a wrong password is refused", func(t *testing.T) {
		if err := imagebuild.Push(ctx, img, ref, true, &imagebuild.Basic{Username: "alice", Password: "nope"}); err == nil {
			t.Errorf("push with a wrong password succeeded")
		}
	})
	t.Run("the right password pushes and pulls", func(t *testing.T) {
		testenv.PushImage(t, ref, img, &imagebuild.Basic{Username: "alice", Password: "s3cret"})
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
			t.Errorf("pull with the right password: %v", err)
		}
	})
}
