package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// ARM's rule for resource group names.
var rgNamePattern = regexp.MustCompile(`^[-\w._()]{1,90}$`)

func resourceGroupID(sub, rg string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg
}

func rgToWire(rg *types.ResourceGroup) armv1.ResourceGroup {
	return armv1.ResourceGroup{
		ID:         resourceGroupID(rg.Subscription, rg.Name),
		Name:       rg.Name,
		Type:       "Microsoft.Resources/resourceGroups",
		Location:   rg.Location,
		Tags:       rg.Tags,
		Properties: &armv1.ResourceGroupProperties{ProvisioningState: "Succeeded"},
	}
}

func (s *Server) putResourceGroup(r *http.Request) (*response, error) {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	if !rgNamePattern.MatchString(name) || strings.HasSuffix(name, ".") {
		return nil, badRequest("InvalidResourceGroupName",
			fmt.Sprintf("Resource group name '%s' is invalid. It must be 1-90 characters of letters, digits, '_', '-', '.', '(' or ')' and must not end with '.'.", name))
	}
	var body armv1.ResourceGroup
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if strings.TrimSpace(body.Location) == "" {
		return nil, badRequest("LocationRequired", "The location property is required for this definition.")
	}
	key := types.ResourceGroupKey(sub, name)
	existing, rev, err := s.rgs.Get(r.Context(), key)
	switch {
	case errdefs.IsNotFound(err):
		rg := types.ResourceGroup{Subscription: sub, Name: name, Location: normalizeLocation(body.Location), Tags: body.Tags, CreatedAt: s.now().UTC()}
		if _, err := s.rgs.Create(r.Context(), key, rg); err != nil {
			return nil, err
		}
		return &response{status: http.StatusCreated, body: rgToWire(&rg)}, nil
	case err != nil:
		return nil, err
	}
	if normalizeLocation(body.Location) != existing.Location {
		return nil, armError(http.StatusConflict, "InvalidResourceGroupLocation",
			fmt.Sprintf("Invalid resource group location '%s'. The Resource group already exists in location '%s'.", body.Location, existing.Location))
	}
	existing.Tags = body.Tags
	if _, err := s.rgs.Update(r.Context(), key, existing, rev); err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: rgToWire(&existing)}, nil
}

func (s *Server) getResourceGroup(r *http.Request) (*response, error) {
	rg, err := s.resourceGroup(r)
	if err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: rgToWire(rg)}, nil
}

// resourceGroup loads the request's resource group, or returns ARM's
// ResourceGroupNotFound.
func (s *Server) resourceGroup(r *http.Request) (*types.ResourceGroup, error) {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	rg, _, err := s.rgs.Get(r.Context(), types.ResourceGroupKey(sub, name))
	if errdefs.IsNotFound(err) {
		return nil, armError(http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", name))
	}
	if err != nil {
		return nil, err
	}
	return &rg, nil
}

func (s *Server) listResourceGroups(r *http.Request) (*response, error) {
	items, _, err := s.rgs.List(r.Context())
	if err != nil {
		return nil, err
	}
	prefix := strings.ToLower(r.PathValue("sub")) + "/"
	list := armv1.ResourceGroupList{Value: []armv1.ResourceGroup{}}
	for _, it := range items {
		if strings.HasPrefix(it.Key, prefix) {
			list.Value = append(list.Value, rgToWire(&it.Value))
		}
	}
	return &response{status: http.StatusOK, body: list}, nil
}

// deleteResourceGroup deletes the group and, as ARM does, every container
// group in it: they are marked for deletion and the agent tears them down.
func (s *Server) deleteResourceGroup(r *http.Request) (*response, error) {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	key := types.ResourceGroupKey(sub, name)
	_, rev, err := s.rgs.Get(r.Context(), key)
	if errdefs.IsNotFound(err) {
		return &response{status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	groups, _, err := s.store.List(r.Context(), types.PrefixGroups+key+"/")
	if err != nil {
		return nil, err
	}
	for _, kv := range groups {
		if err := s.markDeleting(r.Context(), kv.Key[len(types.PrefixGroups):]); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if err := s.deleteVNetsIn(r.Context(), key); err != nil { // issue 5
		return nil, err
	}
	if err := s.rgs.Delete(r.Context(), key, rev); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &response{status: http.StatusOK}, nil
}

// markDeleting flags one container group for deletion, retrying on
// concurrent writes.
func (s *Server) markDeleting(ctx context.Context, key string) error {
	for {
		g, rev, err := s.groups.Get(ctx, key)
		if err != nil {
			return err
		}
		if g.Deleting {
			return nil
		}
		g.Deleting = true
		_, err = s.groups.Update(ctx, key, g, rev)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		return err
	}
}

// normalizeLocation turns "West US" into "westus", as ARM does.
func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(l, " ", ""))
}
