package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/uuid"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// operationAPIVersion is what the real service puts in its status URLs,
// whatever the request's api-version was.
const operationAPIVersion = "2018-06-01"

func (s *Server) newOperation(kind string, g *types.ContainerGroup) types.Operation {
	return types.Operation{
		ID:           uuid.NewString(),
		Kind:         kind,
		Subscription: g.Subscription,
		Location:     g.Location,
		GroupKey:     g.Key(),
		GroupUID:     g.UID,
		Generation:   g.Generation,
		Restarts:     g.Restarts,
		ResourceID:   groupID(g.Subscription, g.ResourceGroup, g.Name),
		Status:       types.OperationPending,
		StartTime:    s.now().UTC(),
	}
}

// asyncHeaders are the headers that make the Azure SDK poll an operation:
// an absolute Azure-AsyncOperation URL on the host the client used, and a
// short Retry-After so clients do not wait the SDK's default 30 s.
func (s *Server) asyncHeaders(r *http.Request, op *types.Operation) http.Header {
	u := fmt.Sprintf("https://%s/subscriptions/%s/providers/Microsoft.ContainerInstance/locations/%s/operations/%s?api-version=%s",
		r.Host, op.Subscription, op.Location, op.ID, operationAPIVersion)
	h := http.Header{}
	h.Set("Azure-AsyncOperation", u)
	h.Set("Retry-After", "1")
	return h
}

func (s *Server) getOperation(r *http.Request) (*response, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	op, rev, err := s.ops.Get(ctx, id)
	if errdefs.IsNotFound(err) || (err == nil && !strings.EqualFold(op.Subscription, r.PathValue("sub"))) {
		return nil, armError(http.StatusNotFound, "OperationNotFound", fmt.Sprintf("The operation '%s' was not found.", id))
	}
	if err != nil {
		return nil, err
	}
	var events []types.Event
	if op.Status == types.OperationPending {
		var st *types.GroupStatus
		op.Status, op.ErrorCode, op.ErrorMessage, st, err = s.evaluate(r, &op)
		if err != nil {
			return nil, err
		}
		if st != nil {
			for _, c := range st.Containers {
				events = append(events, c.Events...)
			}
		}
		if op.Status != types.OperationPending {
			op.EndTime = s.now().UTC()
			// Freeze the verdict; a lost race means another poll froze it.
			if _, err := s.ops.Update(ctx, id, op, rev); err != nil && !errors.Is(err, errdefs.ErrConflict) {
				return nil, err
			}
		}
	}
	body := armv1.OperationStatus{
		ID:         op.ResourceID,
		Name:       op.ID,
		Status:     op.Status,
		StartTime:  formatTime(op.StartTime),
		EndTime:    formatTime(op.EndTime),
		Properties: &armv1.OperationProperties{Events: eventsToWire(events)},
	}
	if op.ErrorCode != "" {
		body.Error = &armv1.ErrorBody{Code: op.ErrorCode, Message: op.ErrorMessage}
	}
	return &response{status: http.StatusOK, body: body}, nil
}

// evaluate derives an operation's status from the group it acts on.
func (s *Server) evaluate(r *http.Request, op *types.Operation) (status, code, message string, st *types.GroupStatus, err error) {
	g, _, err := s.groups.Get(r.Context(), op.GroupKey)
	gone := errdefs.IsNotFound(err) || (err == nil && g.UID != op.GroupUID)
	if err != nil && !errdefs.IsNotFound(err) {
		return "", "", "", nil, err
	}
	if op.Kind == types.OperationDelete {
		if gone {
			return types.OperationSucceeded, "", "", nil, nil
		}
		return types.OperationPending, "", "", nil, nil
	}
	if gone || g.Deleting {
		return types.OperationCanceled, "OperationCanceled", "The container group was deleted before the operation finished.", nil, nil
	}
	st = s.groupStatus(r, &g)
	if st == nil || st.ObservedGeneration < op.Generation || st.ObservedRestarts < op.Restarts {
		return types.OperationPending, "", "", st, nil
	}
	switch st.ProvisioningState {
	case types.ProvisioningSucceeded:
		return types.OperationSucceeded, "", "", st, nil
	case types.ProvisioningFailed:
		code := st.ErrorCode
		if code == "" {
			code = "ContainerGroupDeploymentFailed"
		}
		return types.OperationFailed, code, st.ErrorMessage, st, nil
	}
	return types.OperationPending, "", "", st, nil
}
