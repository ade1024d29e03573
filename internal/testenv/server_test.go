package testenv_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/berth-dev/berth/internal/testenv"
)

func TestStartServer(t *testing.T) {
	testenv.RequireRoot(t)
	var srv *testenv.Server
	t.Run("the server answers and survives a restart", func(t *testing.T) {
		ctd := testenv.StartContainerd(t)
		reg := testenv.StartRegistry(t)
		srv = testenv.StartServer(t, testenv.ServerOptions{Containerd: ctd, InsecureRegistries: []string{reg.Addr}})

		if !strings.HasPrefix(srv.Client.Endpoint, "https://127.0.0.1:") || srv.Client.Token == "" {
			t.Errorf("got client config %+v", srv.Client)
		}
		if len(srv.Bridge) > 15 || !strings.HasPrefix(srv.Bridge, "bt") {
			t.Errorf("got bridge name %q", srv.Bridge)
		}
		get := func() int {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := srv.Do(ctx, "GET", "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01", nil)
			if err != nil {
				t.Fatalf("list groups: %v", err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(); code != 200 {
			t.Errorf("list groups answered %d, want 200", code)
		}
		endpoint := srv.Client.Endpoint
		srv.Restart(t)
		if srv.Client.Endpoint != endpoint {
			t.Errorf("endpoint changed over a restart: %s, then %s", endpoint, srv.Client.Endpoint)
		}
		if code := get(); code != 200 {
			t.Errorf("after restart, list groups answered %d, want 200", code)
		}
	})
	if srv == nil {
		t.FailNow()
	}
	t.Run("cleanup removed the server, its bridge and its data dir", func(t *testing.T) {
		if c, err := net.DialTimeout("tcp", srv.Listen, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections", srv.Listen)
		}
		if _, err := net.InterfaceByName(srv.Bridge); err == nil {
			t.Errorf("bridge %s still exists", srv.Bridge)
		}
		if _, err := os.Stat(srv.DataDir); !os.IsNotExist(err) {
			t.Errorf("%s still exists", srv.DataDir)
		}
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(srv.DataDir))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mounts {
			t.Errorf("still mounted: %s", m.Mountpoint)
		}
	})
}
