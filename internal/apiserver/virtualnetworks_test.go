package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	netwire "github.com/berth-dev/berth/api/network"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/store"
)

const (
	vnetPath = "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/"
	netV     = "?api-version=2024-05-01"
	// publicSubnet is the node's public subnet in these tests.
	publicSubnet = "10.88.0.0/16"
)

// newNetEnv is newEnv with the node's public subnet set.
func newNetEnv(t *testing.T) *env {
	t.Helper()
	cli, err := embedetcd.NewClient(context.Background(), etcdEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	st := store.New(cli, fmt.Sprintf("/test-%d/", prefixSeq.Add(1)))
	tokens, err := auth.NewTokens(testToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(New(Options{Store: st, Tokens: tokens, PublicSubnet: publicSubnet}))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, store: st}
	e.createRG()
	return e
}

// vnetBody renders a virtual network: space is the address prefixes,
// subnets "name=prefix" or "name=prefix+" for one delegated to ACI.
func vnetBody(space string, subnets ...string) string {
	var sns []string
	for _, s := range subnets {
		name, prefix, _ := strings.Cut(s, "=")
		deleg := ""
		if p, ok := strings.CutSuffix(prefix, "+"); ok {
			prefix = p
			deleg = `,"delegations":[{"name":"aci","properties":{"serviceName":"Microsoft.ContainerInstance/containerGroups"}}]`
		}
		sns = append(sns, fmt.Sprintf(`{"name":%q,"properties":{"addressPrefix":%q%s}}`, name, prefix, deleg))
	}
	var quoted []string
	for _, p := range strings.Split(space, ",") {
		quoted = append(quoted, fmt.Sprintf("%q", p))
	}
	return fmt.Sprintf(`{"location":"westus","properties":{"addressSpace":{"addressPrefixes":[%s]},"subnets":[%s]}}`,
		strings.Join(quoted, ","), strings.Join(sns, ","))
}

func TestVnetFromWire(t *testing.T) {
	tests := []struct {
		name     string
		vnet     string
		body     string
		wantCode string
	}{
		{"a network with delegated subnets", "v1", vnetBody("10.1.0.0/16", "a=10.1.0.0/24+", "b=10.1.1.0/24"), ""},
		{"two address prefixes", "v1", vnetBody("10.1.0.0/24,10.2.0.0/24", "a=10.2.0.0/25"), ""},
		{"a bad name", "-v", vnetBody("10.1.0.0/16"), "InvalidResourceName"},
		{"no address space", "v1", `{"location":"westus","properties":{}}`, "InvalidAddressSpace"},
		{"no location", "v1", `{"properties":{"addressSpace":{"addressPrefixes":["10.1.0.0/16"]}}}`, "LocationRequired"},
		{"a prefix that is no CIDR", "v1", vnetBody("10.1.0.0"), "InvalidAddressPrefixFormat"},
		{"an IPv6 prefix", "v1", vnetBody("fd00::/64"), "InvalidAddressPrefixFormat"},
		{"host bits set", "v1", vnetBody("10.1.0.1/16"), "InvalidAddressPrefixFormat"},
		{"overlapping address prefixes", "v1", vnetBody("10.1.0.0/16,10.1.2.0/24"), "VnetAddressSpacesOverlap"},
		{"a subnet outside the address space", "v1", vnetBody("10.1.0.0/16", "a=10.2.0.0/24"), "NetcfgInvalidSubnet"},
		{"a subnet larger than the address space", "v1", vnetBody("10.1.0.0/24", "a=10.1.0.0/23"), "NetcfgInvalidSubnet"},
		{"overlapping subnets", "v1", vnetBody("10.1.0.0/16", "a=10.1.0.0/24", "b=10.1.0.128/25"), "NetcfgSubnetRangesOverlap"},
		{"a duplicate subnet name", "v1", vnetBody("10.1.0.0/16", "a=10.1.0.0/24", "A=10.1.1.0/24"), "DuplicateSubnetName"},
		{"a subnet smaller than /29", "v1", vnetBody("10.1.0.0/16", "a=10.1.0.0/30"), "InvalidSubnetPrefixLength"},
		{"a bad subnet name", "v1", vnetBody("10.1.0.0/16", "a b=10.1.0.0/24"), "InvalidResourceName"},
		{"a subnet without prefix", "v1", `{"location":"westus","properties":{"addressSpace":{"addressPrefixes":["10.1.0.0/16"]},"subnets":[{"name":"a","properties":{}}]}}`, "InvalidAddressPrefixFormat"},
		{"a delegation without service", "v1", `{"location":"westus","properties":{"addressSpace":{"addressPrefixes":["10.1.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.1.0.0/24","delegations":[{"name":"x"}]}}]}}`, "InvalidDelegation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newNetEnv(t)
			code, _, body := e.do("PUT", vnetPath+tt.vnet+netV, tt.body)
			if tt.wantCode == "" {
				if code != http.StatusCreated {
					t.Fatalf("PUT = %d %v, want 201", code, body)
				}
				return
			}
			if code != http.StatusBadRequest || errCode(body) != tt.wantCode {
				t.Fatalf("PUT = %d %v, want 400 %s", code, body, tt.wantCode)
			}
			if code, _, _ := e.do("GET", vnetPath+tt.vnet+netV, ""); code != http.StatusNotFound {
				t.Errorf("GET after a refused PUT = %d, want 404", code)
			}
		})
	}
}

func TestVirtualNetworks_CRUD(t *testing.T) {
	e := newNetEnv(t)
	code, _, body := e.do("PUT", vnetPath+"Net1"+netV, vnetBody("10.1.0.0/16", "a=10.1.0.0/24+"))
	if code != http.StatusCreated {
		t.Fatalf("PUT = %d %v", code, body)
	}
	wantID := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/Net1"
	checks := []struct {
		path []any
		want any
	}{
		{[]any{"id"}, wantID},
		{[]any{"type"}, netwire.VirtualNetworkType},
		{[]any{"properties", "provisioningState"}, "Succeeded"},
		{[]any{"properties", "addressSpace", "addressPrefixes", 0}, "10.1.0.0/16"},
		{[]any{"properties", "subnets", 0, "id"}, wantID + "/subnets/a"},
		{[]any{"properties", "subnets", 0, "properties", "delegations", 0, "properties", "serviceName"}, "Microsoft.ContainerInstance/containerGroups"},
	}
	code, _, got := e.do("GET", strings.Replace(vnetPath, "virtualNetworks", "VIRTUALNETWORKS", 1)+"net1"+netV, "")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %v", code, got)
	}
	for _, c := range checks {
		if v := get(got, c.path...); v != c.want {
			t.Errorf("GET %v = %v, want %v", c.path, v, c.want)
		}
	}

	t.Run("lists include it", func(t *testing.T) {
		for _, p := range []string{"/subscriptions/" + sub + "/providers/Microsoft.Network/virtualNetworks" + netV, strings.TrimSuffix(vnetPath, "/") + netV} {
			code, _, body := e.do("GET", p, "")
			if code != http.StatusOK || get(body, "value", 0, "name") != "Net1" {
				t.Errorf("GET %s = %d %v", p, code, body)
			}
		}
	})

	t.Run("subnets can be added, read and deleted one by one", func(t *testing.T) {
		code, _, body := e.do("PUT", vnetPath+"net1/subnets/b"+netV, `{"properties":{"addressPrefix":"10.1.1.0/24"}}`)
		if code != http.StatusCreated || get(body, "properties", "addressPrefix") != "10.1.1.0/24" {
			t.Fatalf("PUT subnet = %d %v", code, body)
		}
		code, _, body = e.do("PUT", vnetPath+"net1/subnets/c"+netV, `{"properties":{"addressPrefix":"10.1.1.128/25"}}`)
		if code != http.StatusBadRequest || errCode(body) != "NetcfgSubnetRangesOverlap" {
			t.Errorf("PUT overlapping subnet = %d %v, want 400 NetcfgSubnetRangesOverlap", code, body)
		}
		if code, _, body := e.do("GET", vnetPath+"net1/subnets"+netV, ""); code != http.StatusOK || len(get(body, "value").([]any)) != 2 {
			t.Errorf("list subnets = %d %v, want two", code, body)
		}
		if code, _, _ := e.do("DELETE", vnetPath+"net1/subnets/b"+netV, ""); code != http.StatusOK {
			t.Errorf("DELETE subnet = %d, want 200", code)
		}
		if code, _, body := e.do("GET", vnetPath+"net1/subnets/b"+netV, ""); code != http.StatusNotFound {
			t.Errorf("GET deleted subnet = %d %v, want 404", code, body)
		}
	})

	t.Run("address spaces may not overlap another network or the node's subnet", func(t *testing.T) {
		code, _, body := e.do("PUT", vnetPath+"net2"+netV, vnetBody("10.1.128.0/17"))
		if code != http.StatusConflict || errCode(body) != "AddressSpaceOverlapsOtherVirtualNetwork" {
			t.Errorf("PUT overlapping net2 = %d %v, want 409 AddressSpaceOverlapsOtherVirtualNetwork", code, body)
		}
		code, _, body = e.do("PUT", vnetPath+"net3"+netV, vnetBody("10.88.4.0/24"))
		if code != http.StatusBadRequest || errCode(body) != "AddressSpaceOverlapsNodeNetwork" {
			t.Errorf("PUT net3 in the public subnet = %d %v, want 400 AddressSpaceOverlapsNodeNetwork", code, body)
		}
		// The network itself may change its own space.
		if code, _, body := e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.0.0.0/15", "a=10.1.0.0/24+")); code != http.StatusOK {
			t.Errorf("PUT net1 with a larger space = %d %v, want 200", code, body)
		}
	})

	t.Run("delete is idempotent", func(t *testing.T) {
		if code, _, _ := e.do("DELETE", vnetPath+"net1"+netV, ""); code != http.StatusOK {
			t.Errorf("DELETE = %d, want 200", code)
		}
		if code, _, _ := e.do("DELETE", vnetPath+"net1"+netV, ""); code != http.StatusNoContent {
			t.Errorf("second DELETE = %d, want 204", code)
		}
		if code, _, _ := e.do("GET", vnetPath+"net1"+netV, ""); code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d, want 404", code)
		}
	})
}

// subnetGroup is validGroup placed in a subnet of net1, with ip as its
// ipAddress JSON (empty for none).
func subnetGroup(subnet, ip string) string {
	ids := `"subnetIds": [{"id": "/subscriptions/` + sub + `/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/net1/subnets/` + subnet + `"}]`
	if ip != "" {
		ids = ip + ", " + ids
	}
	return strings.Replace(validGroup, `"ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}`, ids, 1)
}

func TestPutGroup_Subnets(t *testing.T) {
	e := newNetEnv(t)
	if code, _, body := e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.1.0.0/16", "a=10.1.0.0/29+", "plain=10.1.1.0/24", "b=10.1.2.0/24+")); code != http.StatusCreated {
		t.Fatalf("PUT vnet = %d %v", code, body)
	}
	private := `"ipAddress": {"type": "Private", "ports": [{"port": 80, "protocol": "TCP"}]}`
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantErr  string
	}{
		{"a delegated subnet", subnetGroup("b", private), 201, ""},
		{"no ipAddress becomes Private", subnetGroup("b", ""), 201, ""},
		{"a subnet without delegation", subnetGroup("plain", private), 400, "SubnetMissingRequiredDelegation"},
		{"a missing subnet", subnetGroup("nope", private), 400, "SubnetNotFound"},
		{"a public IP", subnetGroup("b", `"ipAddress": {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]}`), 400, "PublicIPAddressNotSupportedWithSubnet"},
		{"a missing network", strings.Replace(subnetGroup("b", private), "/net1/", "/net9/", 1), 400, "VirtualNetworkNotFound"},
		{"another subscription", strings.Replace(subnetGroup("b", private), "/subscriptions/"+sub+"/resourceGroups", "/subscriptions/other/resourceGroups", 1), 400, "SubnetInDifferentSubscription"},
		{"a malformed subnet id", strings.Replace(subnetGroup("b", private), "/subnets/b", "/subnetz/b", 1), 400, "InvalidSubnetId"},
		{"another location", strings.Replace(subnetGroup("b", private), `"West US"`, `"East US"`, 1), 400, "SubnetLocationMismatch"},
		{"a private IP without subnet", strings.Replace(validGroup, `"type": "Public"`, `"type": "Private"`, 1), 400, "PrivateIPAddressRequiresSubnet"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("g%d", i)
			code, _, body := e.do("PUT", cgPath+name+apiV, tt.body)
			if code != tt.wantCode || errCode(body) != tt.wantErr {
				t.Fatalf("PUT = %d %v, want %d %q\nbody: %s", code, body, tt.wantCode, tt.wantErr, tt.body)
			}
			if code == 201 {
				if got := get(body, "properties", "ipAddress", "type"); got != "Private" {
					t.Errorf("ipAddress.type = %v, want Private", got)
				}
				if got, _ := get(body, "properties", "subnetIds", 0, "id").(string); !strings.HasSuffix(got, "/subnets/b") {
					t.Errorf("subnetIds = %v", get(body, "properties", "subnetIds"))
				}
			} else if code, _, _ := e.do("GET", cgPath+name+apiV, ""); code != http.StatusNotFound {
				t.Errorf("refused group exists: GET = %d", code)
			}
		})
	}

	t.Run("the subnet of a group cannot change", func(t *testing.T) {
		code, _, body := e.do("PUT", cgPath+"g0"+apiV, strings.Replace(subnetGroup("b", private), "/subnets/b", "/subnets/a", 1))
		if code != http.StatusBadRequest || errCode(body) != "InvalidContainerGroupUpdate" {
			t.Errorf("PUT = %d %v, want 400 InvalidContainerGroupUpdate", code, body)
		}
	})

	t.Run("a full subnet is refused", func(t *testing.T) {
		// A /29 has 8 addresses: network, gateway and broadcast leave 5.
		for i := range 5 {
			if code, _, body := e.do("PUT", cgPath+fmt.Sprintf("full%d", i)+apiV, subnetGroup("a", private)); code != http.StatusCreated {
				t.Fatalf("group %d: PUT = %d %v", i, code, body)
			}
		}
		code, _, body := e.do("PUT", cgPath+"full5"+apiV, subnetGroup("a", private))
		if code != http.StatusBadRequest || errCode(body) != "SubnetIsFull" {
			t.Errorf("sixth group: PUT = %d %v, want 400 SubnetIsFull", code, body)
		}
		// An update of a group already in the subnet takes no new address.
		if code, _, body := e.do("PUT", cgPath+"full0"+apiV, subnetGroup("a", private)); code != http.StatusOK {
			t.Errorf("update of a group in the full subnet: PUT = %d %v, want 200", code, body)
		}
	})

	t.Run("subnets in use cannot be deleted or changed", func(t *testing.T) {
		code, _, body := e.do("DELETE", vnetPath+"net1"+netV, "")
		if code != http.StatusConflict || errCode(body) != "InUseSubnetCannotBeDeleted" {
			t.Errorf("DELETE vnet = %d %v, want 409 InUseSubnetCannotBeDeleted", code, body)
		}
		code, _, body = e.do("DELETE", vnetPath+"net1/subnets/b"+netV, "")
		if code != http.StatusConflict || errCode(body) != "InUseSubnetCannotBeDeleted" {
			t.Errorf("DELETE subnet = %d %v, want 409 InUseSubnetCannotBeDeleted", code, body)
		}
		code, _, body = e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.1.0.0/16", "a=10.1.0.0/29+", "plain=10.1.1.0/24"))
		if code != http.StatusBadRequest || errCode(body) != "InUseSubnetCannotBeDeleted" {
			t.Errorf("PUT without subnet b = %d %v, want 400 InUseSubnetCannotBeDeleted", code, body)
		}
		code, _, body = e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.1.0.0/16", "a=10.1.0.0/29+", "plain=10.1.1.0/24", "b=10.1.2.0/25+"))
		if code != http.StatusBadRequest || errCode(body) != "InUseSubnetCannotBeUpdated" {
			t.Errorf("PUT with b re-addressed = %d %v, want 400 InUseSubnetCannotBeUpdated", code, body)
		}
		// Unused subnets may still change.
		if code, _, body := e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.1.0.0/16", "a=10.1.0.0/29+", "b=10.1.2.0/24+")); code != http.StatusOK {
			t.Errorf("PUT without the unused subnet = %d %v, want 200", code, body)
		}
	})
}

func TestDeleteResourceGroup_DeletesVirtualNetworks(t *testing.T) {
	e := newNetEnv(t)
	if code, _, body := e.do("PUT", vnetPath+"net1"+netV, vnetBody("10.1.0.0/16", "b=10.1.2.0/24+")); code != http.StatusCreated {
		t.Fatalf("PUT vnet = %d %v", code, body)
	}
	if code, _, body := e.do("PUT", cgPath+"g1"+apiV, subnetGroup("b", "")); code != http.StatusCreated {
		t.Fatalf("PUT group = %d %v", code, body)
	}
	if code, _, _ := e.do("DELETE", rgPath+"?api-version=2021-04-01", ""); code != http.StatusOK {
		t.Fatalf("DELETE resource group = %d", code)
	}
	e.createRG()
	if code, _, body := e.do("GET", vnetPath+"net1"+netV, ""); code != http.StatusNotFound {
		t.Errorf("GET vnet after its resource group was deleted = %d %v, want 404", code, body)
	}
	// The group is still being deleted (no agent here) and holds its
	// subnet: a new network may not take the prefix yet.
	code, _, body := e.do("PUT", vnetPath+"net2"+netV, vnetBody("10.1.0.0/16"))
	if code != http.StatusConflict || errCode(body) != "AddressSpaceOverlapsOtherVirtualNetwork" {
		t.Errorf("PUT net2 over the deleting group's subnet = %d %v, want 409 AddressSpaceOverlapsOtherVirtualNetwork", code, body)
	}
	if code, _, body := e.do("PUT", vnetPath+"net3"+netV, vnetBody("10.1.3.0/24")); code != http.StatusCreated {
		t.Errorf("PUT net3 beside it = %d %v, want 201", code, body)
	}
}
