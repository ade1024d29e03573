package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerinstance/armcontainerinstance/v2"
	"github.com/google/uuid"
)

// TestTenancy: with a tokens file, each principal acts only in its own
// subscription. Through the Azure SDK, a principal of one subscription
// cannot read, list, change, stop, delete, read the logs of, exec into or
// attach to another subscription's group, gets the same 403 whether the
// group exists or not, and the group is untouched afterwards.
func TestTenancy(t *testing.T) {
	t.Parallel()
	subA, subB := uuid.NewString(), uuid.NewString()
	aliceToken, bobToken := "alice-"+uuid.NewString(), "bob-"+uuid.NewString()
	tokensFile := filepath.Join(t.TempDir(), "tokens.json")
	b, err := json.Marshal(map[string]any{"principals": []map[string]any{
		{"name": "alice", "token": aliceToken, "subscriptions": []string{subA}},
		{"name": "bob", "token": bobToken, "subscriptions": []string{subB}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokensFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	admin := newEnvWith(t, []string{"--tokens-file", tokensFile})
	alice := admin.as(t, aliceToken, subA)
	bob := admin.as(t, bobToken, subB)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const name = "bobs-group"
	cg, err := bob.create(ctx, t, name, helloGroup(bob.helloRef))
	if err != nil {
		t.Fatal(err)
	}
	if provisioningState(cg) != "Succeeded" {
		t.Fatalf("bob's group: provisioningState %q", provisioningState(cg))
	}

	// Alice's SDK clients aimed at Bob's subscription.
	groups, err := armcontainerinstance.NewContainerGroupsClient(subB, staticToken(aliceToken), admin.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	containers, err := armcontainerinstance.NewContainersClient(subB, staticToken(aliceToken), admin.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{name, "no-such-group"} {
		calls := map[string]func() error{
			"Get": func() error { _, err := groups.Get(ctx, bob.rg, target, nil); return err },
			"List": func() error {
				_, err := groups.NewListPager(nil).NextPage(ctx)
				return err
			},
			"ListByResourceGroup": func() error {
				_, err := groups.NewListByResourceGroupPager(bob.rg, nil).NextPage(ctx)
				return err
			},
			"CreateOrUpdate": func() error {
				_, err := groups.BeginCreateOrUpdate(ctx, bob.rg, target, helloGroup(bob.helloRef), nil)
				return err
			},
			"Update": func() error {
				_, err := groups.Update(ctx, bob.rg, target, armcontainerinstance.Resource{Tags: map[string]*string{"owner": to.Ptr("alice")}}, nil)
				return err
			},
			"Stop":    func() error { _, err := groups.Stop(ctx, bob.rg, target, nil); return err },
			"Restart": func() error { _, err := groups.BeginRestart(ctx, bob.rg, target, nil); return err },
			"Delete":  func() error { _, err := groups.BeginDelete(ctx, bob.rg, target, nil); return err },
			"ListLogs": func() error {
				_, err := containers.ListLogs(ctx, bob.rg, target, "hello", nil)
				return err
			},
			"ExecuteCommand": func() error {
				_, err := containers.ExecuteCommand(ctx, bob.rg, target, "hello", armcontainerinstance.ContainerExecRequest{Command: to.Ptr("/bin/sh")}, nil)
				return err
			},
			"Attach": func() error { _, err := containers.Attach(ctx, bob.rg, target, "hello", nil); return err },
		}
		for op, call := range calls {
			err := call()
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || re.ErrorCode != "AuthorizationFailed" {
				t.Errorf("alice %s on bob's %q: got %v, want 403 AuthorizationFailed", op, target, err)
			}
		}
	}

	// Bob's group is as it was: running, untagged, serving.
	got, err := bob.groups.Get(ctx, bob.rg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if containerState(got.ContainerGroup) != "Running" || len(got.Tags) != 0 {
		t.Errorf("bob's group after alice's attempts: state %q, tags %v", containerState(got.ContainerGroup), got.Tags)
	}
	if _, err := fetchPage(ctx, groupIP(got.ContainerGroup)); err != nil {
		t.Errorf("bob's page: %v", err)
	}
	// Alice's own subscription shows none of it; the admin sees bob's group.
	names, err := listNames(ctx, alice.groups.NewListPager(nil), func(p armcontainerinstance.ContainerGroupsClientListResponse) []*armcontainerinstance.ContainerGroup {
		return p.Value
	})
	if err != nil || len(names) != 0 {
		t.Errorf("alice's list: %v, %v; want no groups", names, err)
	}
	adminInB, err := armcontainerinstance.NewContainerGroupsClient(subB, staticToken(admin.srv.Client.Token), admin.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminInB.Get(ctx, bob.rg, name, nil); err != nil {
		t.Errorf("admin get of bob's group: %v", err)
	}
}
