package apiserver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/uuid"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// putGroup creates or replaces a container group. The work happens in the
// agent; the response carries an Azure-AsyncOperation URL the SDK polls.
func (s *Server) putGroup(r *http.Request) (*response, error) {
	ctx := r.Context()
	sub, rgName, name := r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name")
	if err := validateGroupName(name); err != nil {
		return nil, err
	}
	rg, err := s.resourceGroup(r)
	if err != nil {
		return nil, err
	}
	var body armv1.ContainerGroup
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	spec, err := specFromWire(name, &body)
	if err != nil {
		return nil, err
	}
	key := types.GroupKey(sub, rgName, name)
	var subnets []armv1.SubnetID
	if body.Properties != nil {
		subnets = body.Properties.SubnetIDs
	}
	if err := s.placeGroup(ctx, sub, key, name, normalizeLocation(body.Location), subnets, &spec); err != nil {
		return nil, err
	}
	g, rev, err := s.groups.Get(ctx, key)
	created := errdefs.IsNotFound(err)
	oldFQDN := "" // the DNS name the group holds now (issue 5)
	switch {
	case created:
		g = types.ContainerGroup{
			Subscription:  sub,
			ResourceGroup: rg.Name,
			Name:          name,
			UID:           strings.ReplaceAll(uuid.NewString(), "-", ""),
			Location:      normalizeLocation(body.Location),
			Tags:          body.Tags,
			Generation:    1,
			CreatedAt:     s.now().UTC(),
			Spec:          spec,
		}
		if a := g.Spec.IPAddress; a != nil {
			a.FQDN = s.fqdnOf(&g, a, nil)
		}
	case err != nil:
		return nil, err
	case g.Deleting:
		return nil, armError(http.StatusConflict, "ContainerGroupTransitioning",
			fmt.Sprintf("The container group '%s' is being deleted. Retry the request once the deletion has finished.", name))
	default:
		if loc := normalizeLocation(body.Location); loc != g.Location {
			return nil, badRequest("InvalidContainerGroupUpdate",
				fmt.Sprintf("The location of container group '%s' cannot change from '%s' to '%s'. Delete it first and then create a new one.", name, g.Location, loc))
		}
		if err := checkUpdate(name, &g.Spec, &spec); err != nil {
			return nil, err
		}
		g.Tags = body.Tags
		if a := g.Spec.IPAddress; a != nil {
			oldFQDN = a.FQDN
		}
		if a := spec.IPAddress; a != nil {
			a.FQDN = s.fqdnOf(&g, a, g.Spec.IPAddress)
		}
		// A PUT of the same spec changes tags only; containers keep running.
		// So does a change of the DNS name only (issue 5): the IP stays.
		if !reflect.DeepEqual(g.Spec, spec) {
			redeploy := !sameButDNSName(&g.Spec, &spec)
			g.Spec = spec
			if redeploy {
				g.Stopped = false
				g.Generation++
			}
		}
	}

	op := s.newOperation(types.OperationUpdate, &g)
	if created {
		op.Kind = types.OperationCreate
	}
	// The operation goes first: an operation without its group is harmless
	// (its status says Canceled), a group whose operation is missing would
	// leave the client polling a 404.
	if _, err := s.ops.Create(ctx, op.ID, op); err != nil {
		return nil, err
	}
	switch {
	case oldFQDN != "" || (g.Spec.IPAddress != nil && g.Spec.IPAddress.FQDN != ""):
		// The group and the claim on its DNS name are written together.
		if created {
			rev = 0
		}
		err = s.writeGroupWithDNSName(ctx, &g, rev, oldFQDN)
	case created:
		_, err = s.groups.Create(ctx, key, g)
	default:
		_, err = s.groups.Update(ctx, key, g, rev)
	}
	if err != nil {
		_ = s.ops.Delete(ctx, op.ID, 0)
		if errdefs.IsAlreadyExists(err) || errdefs.IsConflict(err) {
			return nil, armError(http.StatusConflict, "Conflict",
				fmt.Sprintf("The container group '%s' was changed by another request at the same time. Retry the request.", name))
		}
		return nil, err
	}
	st := s.groupStatus(r, &g)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return &response{status: status, body: groupToWire(&g, st, true), header: s.asyncHeaders(r, &op)}, nil
}

func (s *Server) getGroup(r *http.Request) (*response, error) {
	g, err := s.group(r)
	if err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: groupToWire(g, s.groupStatus(r, g), true)}, nil
}

// group loads the container group named by the request path, checking its
// resource group first so a missing one reports ResourceGroupNotFound.
func (s *Server) group(r *http.Request) (*types.ContainerGroup, error) {
	if _, err := s.resourceGroup(r); err != nil {
		return nil, err
	}
	sub, rg, name := r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name")
	g, _, err := s.groups.Get(r.Context(), types.GroupKey(sub, rg, name))
	if errdefs.IsNotFound(err) {
		return nil, armError(http.StatusNotFound, "ResourceNotFound",
			fmt.Sprintf("The Resource 'Microsoft.ContainerInstance/containerGroups/%s' under resource group '%s' was not found.", name, rg))
	}
	if err != nil {
		return nil, err
	}
	return &g, nil
}

// groupStatus returns the agent's report for this incarnation of the group,
// or nil when there is none yet.
func (s *Server) groupStatus(r *http.Request, g *types.ContainerGroup) *types.GroupStatus {
	st, _, err := s.status.Get(r.Context(), g.Key())
	if err != nil {
		if !errdefs.IsNotFound(err) {
			s.log.Warn("read group status", "group", g.Key(), "err", err)
		}
		return nil
	}
	if st.UID != g.UID {
		return nil
	}
	return &st
}

func (s *Server) listGroupsBySubscription(r *http.Request) (*response, error) {
	return s.listGroups(r, strings.ToLower(r.PathValue("sub"))+"/")
}

func (s *Server) listGroupsByResourceGroup(r *http.Request) (*response, error) {
	if _, err := s.resourceGroup(r); err != nil {
		return nil, err
	}
	return s.listGroups(r, types.ResourceGroupKey(r.PathValue("sub"), r.PathValue("rg"))+"/")
}

// listGroups lists the groups whose keys start with scope, with their
// status, one page of s.pageSize at a time: a page that is not the last
// ends with a nextLink whose $skipToken is the page's last key, as ARM
// pages. Groups and statuses share their key layout, so a page is two
// range reads, whatever the number of groups.
func (s *Server) listGroups(r *http.Request, scope string) (*response, error) {
	var after string
	if tok := r.URL.Query().Get("$skipToken"); tok != "" {
		last, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(last), scope) {
			return nil, badRequest("InvalidSkipToken", fmt.Sprintf("The $skipToken '%s' is not one this list handed out.", tok))
		}
		after = string(last)
	}
	groups, more, err := s.groups.ListPage(r.Context(), scope, after, int64(s.pageSize))
	if err != nil {
		return nil, err
	}
	list := armv1.ContainerGroupList{Value: []armv1.ContainerGroup{}}
	if len(groups) == 0 {
		return &response{status: http.StatusOK, body: list}, nil
	}
	last := groups[len(groups)-1].Key
	statuses, _, err := s.status.ListRange(r.Context(), groups[0].Key, last+"\x00", 0)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]*types.GroupStatus, len(statuses))
	for i := range statuses {
		byKey[statuses[i].Key] = &statuses[i].Value
	}
	for i := range groups {
		g := &groups[i].Value
		st := byKey[g.Key()]
		if st != nil && st.UID != g.UID {
			st = nil // the status of an earlier incarnation
		}
		list.Value = append(list.Value, groupToWire(g, st, false))
	}
	if more {
		q := r.URL.Query()
		q.Set("$skipToken", base64.RawURLEncoding.EncodeToString([]byte(last)))
		list.NextLink = (&url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}).String()
	}
	return &response{status: http.StatusOK, body: list}, nil
}

// deleteGroup marks the group for deletion and answers 202 with an
// operation the SDK polls until the agent removed everything.
func (s *Server) deleteGroup(r *http.Request) (*response, error) {
	g, err := s.group(r)
	var ae *Error
	if errors.As(err, &ae) && ae.Code == "ResourceNotFound" {
		return &response{status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	op := s.newOperation(types.OperationDelete, g)
	if _, err := s.ops.Create(r.Context(), op.ID, op); err != nil {
		return nil, err
	}
	if err := s.markDeleting(r.Context(), g.Key()); err != nil {
		if errdefs.IsNotFound(err) {
			return &response{status: http.StatusNoContent}, nil
		}
		return nil, err
	}
	return &response{status: http.StatusAccepted, header: s.asyncHeaders(r, &op)}, nil
}

func (s *Server) containerLogs(r *http.Request) (*response, error) {
	g, err := s.group(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("container")
	found := false
	for _, c := range g.Spec.Containers {
		found = found || c.Name == name
	}
	if !found {
		return nil, armError(http.StatusNotFound, "ContainerNotFound",
			fmt.Sprintf("The container '%s' is not found in container group '%s'.", name, g.Name))
	}
	tail := 0
	if t := r.URL.Query().Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, badRequest("InvalidTail", fmt.Sprintf("The tail value '%s' is invalid. It must be a non-negative integer.", t))
		}
		tail = n
	}
	node, ref, err := s.nodeService(r.Context(), g)
	if err != nil {
		return nil, err
	}
	content, err := node.ReadLog(r.Context(), nodeapi.LogRequest{Group: ref, Container: name, Tail: tail})
	if err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, body: armv1.Logs{Content: content}}, nil
}
