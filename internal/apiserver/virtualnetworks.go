package apiserver

// A minimal Microsoft.Network: virtual networks with an address space and
// subnets, and subnet delegation to Microsoft.ContainerInstance. Groups
// name a subnet in subnetIds; placeGroup resolves it when the group is
// written.
//
// All virtual networks of all subscriptions share the node's one routing
// table, so their address spaces may not overlap each other or the node's
// public subnet (Azure allows overlapping networks; Berth cannot route
// them).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	netwire "github.com/berth-dev/berth/api/network"
	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// Azure's naming rules for virtual networks and subnets.
var (
	vnetNamePattern   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9_])?$`)
	subnetNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,78}[a-zA-Z0-9_])?$`)
	// subnetIDPattern is an ARM subnet id; keywords match without case.
	subnetIDPattern = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Network/virtualNetworks/([^/]+)/subnets/([^/]+)$`)
)

// Subnet sizes Berth accepts: Azure's smallest subnet is a /29.
const (
	minSubnetBits = 8
	maxSubnetBits = 29
)

func (s *Server) networkRoutes(rg string) {
	const vnets = "/providers/microsoft.network/virtualnetworks"
	vn := rg + vnets + "/{vnet}"
	s.mux.Handle("GET /subscriptions/{sub}"+vnets, s.wrap(s.listVNetsBySubscription))
	s.mux.Handle("GET "+rg+vnets, s.wrap(s.listVNetsByResourceGroup))
	s.mux.Handle("PUT "+vn, s.wrap(s.putVNet))
	s.mux.Handle("GET "+vn, s.wrap(s.getVNet))
	s.mux.Handle("DELETE "+vn, s.wrap(s.deleteVNet))
	s.mux.Handle("GET "+vn+"/subnets", s.wrap(s.listSubnets))
	s.mux.Handle("PUT "+vn+"/subnets/{subnet}", s.wrap(s.putSubnet))
	s.mux.Handle("GET "+vn+"/subnets/{subnet}", s.wrap(s.getSubnet))
	s.mux.Handle("DELETE "+vn+"/subnets/{subnet}", s.wrap(s.deleteSubnet))
}

func (s *Server) vnets() store.Typed[types.VirtualNetwork] {
	return store.NewTyped[types.VirtualNetwork](s.store, types.PrefixVirtualNetworks)
}

func vnetID(sub, rg, name string) string {
	return resourceGroupID(sub, rg) + "/providers/Microsoft.Network/virtualNetworks/" + name
}

func subnetID(sub, rg, vnet, subnet string) string {
	return vnetID(sub, rg, vnet) + "/subnets/" + subnet
}

// vnetFromWire validates a PUT body of a virtual network. It checks the
// network on its own; conflicts with other networks are checkVNetConflicts'.
func vnetFromWire(sub, rg, name string, w *netwire.VirtualNetwork) (types.VirtualNetwork, error) {
	vn := types.VirtualNetwork{Subscription: sub, ResourceGroup: rg, Name: name}
	if !vnetNamePattern.MatchString(name) {
		return vn, badRequest("InvalidResourceName", fmt.Sprintf(
			"Resource name '%s' is invalid. The name can be up to 64 characters long. It must begin with a letter or number, end with a letter, number or underscore, and may contain only letters, numbers, underscores, periods, or hyphens.", name))
	}
	if strings.TrimSpace(w.Location) == "" {
		return vn, badRequest("LocationRequired", "The location property is required for this definition.")
	}
	vn.Location, vn.Tags = normalizeLocation(w.Location), w.Tags
	p := w.Properties
	if p == nil || p.AddressSpace == nil || len(p.AddressSpace.AddressPrefixes) == 0 {
		return vn, badRequest("InvalidAddressSpace", fmt.Sprintf(
			"The virtual network '%s' must have properties.addressSpace.addressPrefixes with at least one IPv4 CIDR.", name))
	}
	var space []netip.Prefix
	for _, a := range p.AddressSpace.AddressPrefixes {
		pfx, err := parseCIDR(a)
		if err != nil {
			return vn, err
		}
		for _, other := range space {
			if other.Overlaps(pfx) {
				return vn, badRequest("VnetAddressSpacesOverlap", fmt.Sprintf(
					"The address prefixes %s and %s of virtual network '%s' overlap.", other, pfx, name))
			}
		}
		space = append(space, pfx)
		vn.AddressPrefixes = append(vn.AddressPrefixes, pfx.String())
	}
	var subnets []netip.Prefix
	for _, ws := range p.Subnets {
		sn, pfx, err := subnetFromWire(name, space, &ws)
		if err != nil {
			return vn, err
		}
		for i, other := range subnets {
			if strings.EqualFold(vn.Subnets[i].Name, sn.Name) {
				return vn, badRequest("DuplicateSubnetName", fmt.Sprintf(
					"The subnet name '%s' is used more than once in virtual network '%s'.", sn.Name, name))
			}
			if other.Overlaps(pfx) {
				return vn, badRequest("NetcfgSubnetRangesOverlap", fmt.Sprintf(
					"Subnet '%s' is not valid because its IP address range %s overlaps with that of subnet '%s' (%s).", sn.Name, pfx, vn.Subnets[i].Name, other))
			}
		}
		subnets = append(subnets, pfx)
		vn.Subnets = append(vn.Subnets, sn)
	}
	return vn, nil
}

// subnetFromWire validates one subnet against the network's address space.
func subnetFromWire(vnet string, space []netip.Prefix, ws *netwire.Subnet) (types.Subnet, netip.Prefix, error) {
	sn := types.Subnet{Name: ws.Name}
	if !subnetNamePattern.MatchString(ws.Name) {
		return sn, netip.Prefix{}, badRequest("InvalidResourceName", fmt.Sprintf(
			"Subnet name '%s' in virtual network '%s' is invalid. The name can be up to 80 characters long. It must begin with a letter or number, end with a letter, number or underscore, and may contain only letters, numbers, underscores, periods, or hyphens.", ws.Name, vnet))
	}
	if ws.Properties == nil || ws.Properties.AddressPrefix == "" {
		return sn, netip.Prefix{}, badRequest("InvalidAddressPrefixFormat", fmt.Sprintf(
			"Subnet '%s' of virtual network '%s' has no properties.addressPrefix.", ws.Name, vnet))
	}
	pfx, err := parseCIDR(ws.Properties.AddressPrefix)
	if err != nil {
		return sn, netip.Prefix{}, err
	}
	if pfx.Bits() < minSubnetBits || pfx.Bits() > maxSubnetBits {
		return sn, netip.Prefix{}, badRequest("InvalidSubnetPrefixLength", fmt.Sprintf(
			"Subnet '%s' of virtual network '%s' has prefix %s; the prefix length must be between /%d and /%d.", ws.Name, vnet, pfx, minSubnetBits, maxSubnetBits))
	}
	inside := slices.ContainsFunc(space, func(a netip.Prefix) bool { return a.Bits() <= pfx.Bits() && a.Contains(pfx.Addr()) })
	if !inside {
		return sn, netip.Prefix{}, badRequest("NetcfgInvalidSubnet", fmt.Sprintf(
			"Subnet '%s' is not valid in virtual network '%s': its prefix %s is outside the address space.", ws.Name, vnet, pfx))
	}
	sn.AddressPrefix = pfx.String()
	for _, d := range ws.Properties.Delegations {
		if d.Properties == nil || d.Properties.ServiceName == "" {
			return sn, netip.Prefix{}, badRequest("InvalidDelegation", fmt.Sprintf(
				"A delegation of subnet '%s' in virtual network '%s' has no properties.serviceName.", ws.Name, vnet))
		}
		name := d.Name
		if name == "" {
			name = d.Properties.ServiceName
		}
		sn.Delegations = append(sn.Delegations, types.Delegation{Name: name, ServiceName: d.Properties.ServiceName})
	}
	return sn, pfx, nil
}

// parseCIDR accepts an IPv4 CIDR in canonical form (no host bits set).
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, badRequest("InvalidAddressPrefixFormat", fmt.Sprintf("The address prefix '%s' is not a valid IPv4 CIDR.", s))
	}
	if p != p.Masked() {
		return netip.Prefix{}, badRequest("InvalidAddressPrefixFormat", fmt.Sprintf(
			"The address prefix '%s' has host bits set; use %s.", s, p.Masked()))
	}
	return p, nil
}

func vnetToWire(vn *types.VirtualNetwork) netwire.VirtualNetwork {
	props := &netwire.VirtualNetworkProperties{
		ProvisioningState: "Succeeded",
		AddressSpace:      &netwire.AddressSpace{AddressPrefixes: vn.AddressPrefixes},
		Subnets:           []netwire.Subnet{},
	}
	for i := range vn.Subnets {
		props.Subnets = append(props.Subnets, subnetToWire(vn, &vn.Subnets[i]))
	}
	tags := vn.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return netwire.VirtualNetwork{
		ID:         vnetID(vn.Subscription, vn.ResourceGroup, vn.Name),
		Name:       vn.Name,
		Type:       netwire.VirtualNetworkType,
		Location:   vn.Location,
		Tags:       tags,
		Properties: props,
	}
}

func subnetToWire(vn *types.VirtualNetwork, sn *types.Subnet) netwire.Subnet {
	id := subnetID(vn.Subscription, vn.ResourceGroup, vn.Name, sn.Name)
	props := &netwire.SubnetProperties{ProvisioningState: "Succeeded", AddressPrefix: sn.AddressPrefix, Delegations: []netwire.Delegation{}}
	for _, d := range sn.Delegations {
		props.Delegations = append(props.Delegations, netwire.Delegation{
			ID: id + "/delegations/" + d.Name, Name: d.Name, Type: netwire.DelegationType,
			Properties: &netwire.DelegationProperties{ServiceName: d.ServiceName, ProvisioningState: "Succeeded"},
		})
	}
	return netwire.Subnet{ID: id, Name: sn.Name, Type: netwire.SubnetType, Properties: props}
}

// vnet loads the network named by the request path.
func (s *Server) vnet(r *http.Request) (types.VirtualNetwork, int64, error) {
	if _, err := s.resourceGroup(r); err != nil {
		return types.VirtualNetwork{}, 0, err
	}
	sub, rg, name := r.PathValue("sub"), r.PathValue("rg"), r.PathValue("vnet")
	vn, rev, err := s.vnets().Get(r.Context(), types.VirtualNetworkKey(sub, rg, name))
	if errdefs.IsNotFound(err) {
		return vn, 0, armError(http.StatusNotFound, "ResourceNotFound",
			fmt.Sprintf("The Resource 'Microsoft.Network/virtualNetworks/%s' under resource group '%s' was not found.", name, rg))
	}
	return vn, rev, err
}

func (s *Server) putVNet(r *http.Request) (*response, error) {
	sub, rgName, name := r.PathValue("sub"), r.PathValue("rg"), r.PathValue("vnet")
	rg, err := s.resourceGroup(r)
	if err != nil {
		return nil, err
	}
	var body netwire.VirtualNetwork
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	vn, err := vnetFromWire(sub, rg.Name, name, &body)
	if err != nil {
		return nil, err
	}
	return s.storeVNet(r.Context(), types.VirtualNetworkKey(sub, rgName, name), vn, false)
}

// storeVNet creates or replaces a network after checking it against the
// other networks and the groups that use it. keepMeta keeps the stored
// location and tags (a subnet PUT changes only subnets).
func (s *Server) storeVNet(ctx context.Context, key string, vn types.VirtualNetwork, keepMeta bool) (*response, error) {
	old, rev, err := s.vnets().Get(ctx, key)
	created := errdefs.IsNotFound(err)
	if err != nil && !created {
		return nil, err
	}
	if !created {
		if keepMeta {
			vn.Location, vn.Tags = old.Location, old.Tags
		} else if vn.Location != old.Location {
			return nil, badRequest("InvalidResourceLocation", fmt.Sprintf(
				"The resource '%s' already exists in location '%s'; it cannot move to '%s'.", vn.Name, old.Location, vn.Location))
		}
		vn.Name, vn.CreatedAt = old.Name, old.CreatedAt
		// First, so that a change to a used subnet gets the clearer error.
		if err := s.checkSubnetsInUse(ctx, &old, &vn); err != nil {
			return nil, err
		}
	}
	if err := s.checkVNetConflicts(ctx, &vn); err != nil {
		return nil, err
	}
	if created {
		vn.CreatedAt = s.now().UTC()
		_, err = s.vnets().Create(ctx, key, vn)
	} else {
		_, err = s.vnets().Update(ctx, key, vn, rev)
	}
	if errdefs.IsAlreadyExists(err) || errdefs.IsConflict(err) {
		return nil, armError(http.StatusConflict, "Conflict", fmt.Sprintf(
			"The virtual network '%s' was changed by another request at the same time. Retry the request.", vn.Name))
	}
	if err != nil {
		return nil, err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return &response{status: status, body: vnetToWire(&vn)}, nil
}

// checkVNetConflicts refuses an address space that overlaps the node's
// public subnet or another network: the node routes every network in one
// table.
func (s *Server) checkVNetConflicts(ctx context.Context, vn *types.VirtualNetwork) error {
	items, _, err := s.vnets().List(ctx)
	if err != nil {
		return err
	}
	// Groups keep their subnet's bridge until the agent tore them down,
	// even when their network was deleted with its resource group.
	used, err := s.subnetsInUse(ctx)
	if err != nil {
		return err
	}
	for _, a := range vn.AddressPrefixes {
		pfx := netip.MustParsePrefix(a)
		for _, ref := range used {
			if !netip.MustParsePrefix(ref.AddressPrefix).Overlaps(pfx) {
				continue
			}
			if sn := vn.Subnet(ref.Name); ref.VirtualNetwork == vn.Key() && sn != nil && sn.AddressPrefix == ref.AddressPrefix {
				continue
			}
			return armError(http.StatusConflict, "AddressSpaceOverlapsOtherVirtualNetwork", fmt.Sprintf(
				"The address prefix %s of virtual network '%s' overlaps subnet %s, which container groups on this node still use. Choose another address space, or wait until those groups are deleted.", pfx, vn.Name, ref.AddressPrefix))
		}
	}
	for _, a := range vn.AddressPrefixes {
		pfx := netip.MustParsePrefix(a)
		if s.publicSubnet.IsValid() && s.publicSubnet.Overlaps(pfx) {
			return badRequest("AddressSpaceOverlapsNodeNetwork", fmt.Sprintf(
				"The address prefix %s of virtual network '%s' overlaps the node's public subnet %s. Choose an address space that does not overlap it.", pfx, vn.Name, s.publicSubnet))
		}
		for _, it := range items {
			if it.Key == vn.Key() {
				continue
			}
			for _, b := range it.Value.AddressPrefixes {
				if netip.MustParsePrefix(b).Overlaps(pfx) {
					return armError(http.StatusConflict, "AddressSpaceOverlapsOtherVirtualNetwork", fmt.Sprintf(
						"The address prefix %s of virtual network '%s' overlaps %s of another virtual network on this node. Berth routes all virtual networks of a node in one table, so their address spaces must not overlap.", pfx, vn.Name, b))
				}
			}
		}
	}
	return nil
}

// subnetsInUse returns the subnets of all groups on the node, deleting
// ones included, of every subscription.
func (s *Server) subnetsInUse(ctx context.Context) ([]types.SubnetRef, error) {
	kvs, _, err := s.store.List(ctx, types.PrefixGroups)
	if err != nil {
		return nil, err
	}
	var out []types.SubnetRef
	for _, kv := range kvs {
		var g types.ContainerGroup
		if err := kv.Decode(&g); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if g.Spec.Subnet != nil {
			out = append(out, *g.Spec.Subnet)
		}
	}
	return out, nil
}

// deleteVNetsIn deletes the virtual networks of a resource group, as ARM
// deletes every resource of a deleted resource group. Their groups are
// being deleted too; they keep their resolved subnets until then.
func (s *Server) deleteVNetsIn(ctx context.Context, rgKey string) error {
	items, _, err := s.vnets().List(ctx)
	if err != nil {
		return err
	}
	for _, it := range items {
		if strings.HasPrefix(it.Key, rgKey+"/") {
			if err := s.vnets().Delete(ctx, it.Key, 0); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// groupsInVNet counts, per subnet name (lower-cased), the groups of the
// network's subscription placed in it, deleting ones included (they hold
// their address until the agent has torn them down). skip is a group key
// not to count.
func (s *Server) groupsInVNet(ctx context.Context, vnKey, sub, skip string) (map[string]int, error) {
	kvs, _, err := s.store.List(ctx, types.PrefixGroups+strings.ToLower(sub)+"/")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, kv := range kvs {
		var g types.ContainerGroup
		if err := kv.Decode(&g); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if sn := g.Spec.Subnet; sn != nil && sn.VirtualNetwork == vnKey && g.Key() != skip {
			out[strings.ToLower(sn.Name)]++
		}
	}
	return out, nil
}

// checkSubnetsInUse refuses to remove, re-address or undelegate a subnet
// that groups use.
func (s *Server) checkSubnetsInUse(ctx context.Context, old, vn *types.VirtualNetwork) error {
	used, err := s.groupsInVNet(ctx, old.Key(), old.Subscription, "")
	if err != nil {
		return err
	}
	for _, o := range old.Subnets {
		n := used[strings.ToLower(o.Name)]
		if n == 0 {
			continue
		}
		nw := vn.Subnet(o.Name)
		if nw == nil {
			return badRequest("InUseSubnetCannotBeDeleted", fmt.Sprintf(
				"Subnet '%s' of virtual network '%s' is in use by %d container group(s) and cannot be deleted. Delete the container groups first.", o.Name, old.Name, n))
		}
		if nw.AddressPrefix != o.AddressPrefix || !delegatedToACI(nw) {
			return badRequest("InUseSubnetCannotBeUpdated", fmt.Sprintf(
				"Subnet '%s' of virtual network '%s' is in use by %d container group(s); its address prefix and delegation cannot change.", o.Name, old.Name, n))
		}
	}
	return nil
}

func delegatedToACI(sn *types.Subnet) bool {
	return slices.ContainsFunc(sn.Delegations, func(d types.Delegation) bool {
		return strings.EqualFold(d.ServiceName, types.ContainerGroupDelegation)
	})
}

func (s *Server) getVNet(r *http.Request) (*response, error) {
	vn, _, err := s.vnet(r)
	if err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: vnetToWire(&vn)}, nil
}

func (s *Server) deleteVNet(r *http.Request) (*response, error) {
	vn, rev, err := s.vnet(r)
	var ae *Error
	if errors.As(err, &ae) && ae.Code == "ResourceNotFound" {
		return &response{status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	used, err := s.groupsInVNet(r.Context(), vn.Key(), vn.Subscription, "")
	if err != nil {
		return nil, err
	}
	for _, sn := range vn.Subnets {
		if n := used[strings.ToLower(sn.Name)]; n > 0 {
			return nil, armError(http.StatusConflict, "InUseSubnetCannotBeDeleted", fmt.Sprintf(
				"Subnet '%s' of virtual network '%s' is in use by %d container group(s) and cannot be deleted. Delete the container groups first.", sn.Name, vn.Name, n))
		}
	}
	if err := s.vnets().Delete(r.Context(), vn.Key(), rev); err != nil && !errdefs.IsNotFound(err) {
		if errdefs.IsConflict(err) {
			return nil, armError(http.StatusConflict, "Conflict", fmt.Sprintf("The virtual network '%s' was changed by another request at the same time. Retry the request.", vn.Name))
		}
		return nil, err
	}
	return &response{status: http.StatusOK}, nil
}

func (s *Server) listVNetsBySubscription(r *http.Request) (*response, error) {
	return s.listVNets(r, strings.ToLower(r.PathValue("sub"))+"/")
}

func (s *Server) listVNetsByResourceGroup(r *http.Request) (*response, error) {
	if _, err := s.resourceGroup(r); err != nil {
		return nil, err
	}
	return s.listVNets(r, types.ResourceGroupKey(r.PathValue("sub"), r.PathValue("rg"))+"/")
}

func (s *Server) listVNets(r *http.Request, prefix string) (*response, error) {
	items, _, err := s.vnets().List(r.Context())
	if err != nil {
		return nil, err
	}
	list := netwire.VirtualNetworkList{Value: []netwire.VirtualNetwork{}}
	for _, it := range items {
		if strings.HasPrefix(it.Key, prefix) {
			list.Value = append(list.Value, vnetToWire(&it.Value))
		}
	}
	return &response{status: http.StatusOK, body: list}, nil
}

func (s *Server) listSubnets(r *http.Request) (*response, error) {
	vn, _, err := s.vnet(r)
	if err != nil {
		return nil, err
	}
	list := netwire.SubnetList{Value: []netwire.Subnet{}}
	for i := range vn.Subnets {
		list.Value = append(list.Value, subnetToWire(&vn, &vn.Subnets[i]))
	}
	return &response{status: http.StatusOK, body: list}, nil
}

func (s *Server) subnetNotFound(r *http.Request) error {
	return armError(http.StatusNotFound, "NotFound", fmt.Sprintf(
		"Resource %s not found.", subnetID(r.PathValue("sub"), r.PathValue("rg"), r.PathValue("vnet"), r.PathValue("subnet"))))
}

func (s *Server) getSubnet(r *http.Request) (*response, error) {
	vn, _, err := s.vnet(r)
	if err != nil {
		return nil, err
	}
	sn := vn.Subnet(r.PathValue("subnet"))
	if sn == nil {
		return nil, s.subnetNotFound(r)
	}
	return &response{status: http.StatusOK, body: subnetToWire(&vn, sn)}, nil
}

// putSubnet adds or replaces one subnet of an existing network.
func (s *Server) putSubnet(r *http.Request) (*response, error) {
	vn, _, err := s.vnet(r)
	if err != nil {
		return nil, err
	}
	var body netwire.Subnet
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	name := r.PathValue("subnet")
	body.Name = name
	if old := vn.Subnet(name); old != nil {
		body.Name = old.Name
	}
	w := vnetToWire(&vn)
	subnets := []netwire.Subnet{}
	replaced := false
	for _, ws := range w.Properties.Subnets {
		if strings.EqualFold(ws.Name, name) {
			ws, replaced = body, true
		}
		subnets = append(subnets, ws)
	}
	if !replaced {
		subnets = append(subnets, body)
	}
	w.Properties.Subnets = subnets
	next, err := vnetFromWire(vn.Subscription, vn.ResourceGroup, vn.Name, &w)
	if err != nil {
		return nil, err
	}
	if _, err := s.storeVNet(r.Context(), vn.Key(), next, true); err != nil {
		return nil, err
	}
	status := http.StatusCreated
	if replaced {
		status = http.StatusOK
	}
	return &response{status: status, body: subnetToWire(&next, next.Subnet(name))}, nil
}

func (s *Server) deleteSubnet(r *http.Request) (*response, error) {
	vn, _, err := s.vnet(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("subnet")
	if vn.Subnet(name) == nil {
		return &response{status: http.StatusNoContent}, nil
	}
	next := vn
	next.Subnets = slices.DeleteFunc(slices.Clone(vn.Subnets), func(sn types.Subnet) bool { return strings.EqualFold(sn.Name, name) })
	if _, err := s.storeVNet(r.Context(), vn.Key(), next, true); err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Code == "InUseSubnetCannotBeDeleted" {
			ae.Status = http.StatusConflict
		}
		return nil, err
	}
	return &response{status: http.StatusOK}, nil
}

// placeGroup applies the networking rules of a group PUT: with subnetIds
// the group is Private in that subnet (an absent ipAddress becomes a
// Private one without ports, so the response can report the address); a
// Private ipAddress needs subnetIds, as in ACI. It checks the subnet
// exists in the group's subscription, is delegated to container groups and
// has a free address. key is the group's store key.
func (s *Server) placeGroup(ctx context.Context, sub, key, group, location string, ids []armv1.SubnetID, spec *types.GroupSpec) error {
	ip := spec.IPAddress
	if len(ids) == 0 {
		if ip != nil && ip.Type == "Private" {
			return badRequest("PrivateIPAddressRequiresSubnet", fmt.Sprintf(
				"The IP address of container group '%s' is Private, which needs a virtual network subnet in 'subnetIds'. Use type Public, or name a subnet.", group))
		}
		return nil
	}
	if len(ids) > 1 {
		return badRequest("TooManySubnets", fmt.Sprintf("The container group '%s' names %d subnets; at most one is supported.", group, len(ids)))
	}
	if ip != nil && ip.Type == "Public" {
		return badRequest("PublicIPAddressNotSupportedWithSubnet", fmt.Sprintf(
			"The container group '%s' is placed in a virtual network subnet, so its IP address type must be Private, not Public.", group))
	}
	id := strings.TrimSpace(ids[0].ID)
	m := subnetIDPattern.FindStringSubmatch(id)
	if m == nil {
		return badRequest("InvalidSubnetId", fmt.Sprintf(
			"The subnet id '%s' of container group '%s' is not a valid subnet resource id of the form /subscriptions/{subscription}/resourceGroups/{resourceGroup}/providers/Microsoft.Network/virtualNetworks/{network}/subnets/{subnet}.", id, group))
	}
	if !strings.EqualFold(m[1], sub) {
		return badRequest("SubnetInDifferentSubscription", fmt.Sprintf(
			"The subnet '%s' of container group '%s' belongs to subscription '%s'; the subnet must be in the group's own subscription '%s'.", id, group, m[1], sub))
	}
	vnKey := types.VirtualNetworkKey(m[1], m[2], m[3])
	vn, _, err := s.vnets().Get(ctx, vnKey)
	if errdefs.IsNotFound(err) {
		return badRequest("VirtualNetworkNotFound", fmt.Sprintf(
			"The virtual network '%s' in resource group '%s' named by subnet id '%s' of container group '%s' was not found.", m[3], m[2], id, group))
	}
	if err != nil {
		return err
	}
	sn := vn.Subnet(m[4])
	if sn == nil {
		return badRequest("SubnetNotFound", fmt.Sprintf(
			"The subnet '%s' of virtual network '%s' named by container group '%s' was not found.", m[4], vn.Name, group))
	}
	if !delegatedToACI(sn) {
		return badRequest("SubnetMissingRequiredDelegation", fmt.Sprintf(
			"Subnet '%s' of virtual network '%s' requires a delegation to %s before container groups can use it.", sn.Name, vn.Name, types.ContainerGroupDelegation))
	}
	if vn.Location != location {
		return badRequest("SubnetLocationMismatch", fmt.Sprintf(
			"The container group '%s' is in location '%s' but virtual network '%s' is in '%s'; they must be in the same location.", group, location, vn.Name, vn.Location))
	}
	used, err := s.groupsInVNet(ctx, vnKey, sub, key)
	if err != nil {
		return err
	}
	if n, capacity := used[strings.ToLower(sn.Name)], subnetCapacity(sn.AddressPrefix); n >= capacity {
		return badRequest("SubnetIsFull", fmt.Sprintf(
			"Subnet '%s' with address prefix %s of virtual network '%s' has no free address: its %d addresses for container groups are in use.", sn.Name, sn.AddressPrefix, vn.Name, capacity))
	}
	if ip == nil {
		spec.IPAddress = &types.IPAddress{Type: "Private"}
	}
	spec.Subnet = &types.SubnetRef{ID: id, VirtualNetwork: vnKey, Name: sn.Name, AddressPrefix: sn.AddressPrefix}
	return nil
}

// subnetCapacity is how many groups fit in a subnet: every address but the
// network, the gateway (the bridge) and the broadcast address.
func subnetCapacity(prefix string) int {
	p := netip.MustParsePrefix(prefix)
	return 1<<(32-p.Bits()) - 3
}
