package client

import (
	"context"
	"net/http"
	"strconv"
	"time"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// Operation is a long-running operation the server started: the URL to
// poll (Azure-AsyncOperation, else Location) and the suggested interval.
type Operation struct {
	URL        string
	RetryAfter time.Duration
	// location is true when URL came from a Location header: ARM then
	// answers 202 while running and 200/204 when done, with no status body.
	location bool
}

// operationFrom returns the operation a response announces, or nil.
func operationFrom(resp *response) *Operation {
	op := &Operation{URL: resp.header.Get("Azure-AsyncOperation")}
	if op.URL == "" && resp.status == http.StatusAccepted {
		op.URL, op.location = resp.header.Get("Location"), true
	}
	if op.URL == "" {
		return nil
	}
	if s, err := strconv.Atoi(resp.header.Get("Retry-After")); err == nil && s > 0 {
		op.RetryAfter = time.Duration(s) * time.Second
	}
	return op
}

// Terminal operation states.
const (
	StatusSucceeded = "Succeeded"
	StatusFailed    = "Failed"
	StatusCanceled  = "Canceled"
)

// Poll reads the operation's status once.
func (c *Client) Poll(ctx context.Context, op *Operation) (*armv1.OperationStatus, error) {
	resp, err := c.do(ctx, request{method: http.MethodGet, path: op.URL})
	if err != nil {
		return nil, err
	}
	if op.location {
		st := &armv1.OperationStatus{Status: StatusSucceeded}
		if resp.status == http.StatusAccepted {
			st.Status = "InProgress"
		}
		return st, nil
	}
	var st armv1.OperationStatus
	return &st, decodeJSON(resp.body, &st)
}

// Wait polls op until it ends. tick, when not nil, is called after every
// poll (the CLI prints progress from it). A Failed or Canceled operation
// returns its error as an *APIError, as ARM clients report it.
func (c *Client) Wait(ctx context.Context, op *Operation, tick func(*armv1.OperationStatus)) (*armv1.OperationStatus, error) {
	every := c.PollInterval
	if op.RetryAfter > 0 && op.RetryAfter < every {
		every = op.RetryAfter
	}
	if every <= 0 {
		every = time.Second
	}
	for {
		st, err := c.Poll(ctx, op)
		if err != nil {
			return nil, err
		}
		if tick != nil {
			tick(st)
		}
		switch st.Status {
		case StatusSucceeded:
			return st, nil
		case StatusFailed, StatusCanceled:
			ae := &APIError{StatusCode: http.StatusOK, Code: "OperationFailed", Message: "The operation ended with status " + st.Status + "."}
			if st.Error != nil {
				ae.Code, ae.Message, ae.Target, ae.Details = st.Error.Code, st.Error.Message, st.Error.Target, st.Error.Details
			}
			return st, ae
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
