package nodeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/nodeapi"
)

func TestError_KeepsTheClass(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"not found", errdefs.ErrNotFound, errdefs.IsNotFound},
		{"already exists, which HTTP cannot tell from a conflict", errdefs.ErrAlreadyExists, errdefs.IsAlreadyExists},
		{"conflict", errdefs.ErrConflict, errdefs.IsConflict},
		{"failed precondition", errdefs.ErrFailedPrecondition, errdefs.IsFailedPrecondition},
		{"invalid argument", errdefs.ErrInvalidArgument, errdefs.IsInvalidArgument},
		{"unavailable", errdefs.ErrUnavailable, errdefs.IsUnavailable},
		{"permission denied", errdefs.ErrPermissionDenied, errdefs.IsPermissionDenied},
		{"unauthenticated", errdefs.ErrUnauthenticated, errdefs.IsUnauthorized},
		{"canceled", context.Canceled, errdefs.IsCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("container 'web' of container group 'g': %w", tc.err)
			b, _ := json.Marshal(WireError(err))
			var e Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			got := e.Err()
			if !tc.is(got) || got.Error() != err.Error() {
				t.Errorf("got %v (%T), want the same message and class as %v", got, got, err)
			}
		})
	}
	t.Run("an error without a class stays without one", func(t *testing.T) {
		got := WireError(errors.New("exec: \"nope\": executable file not found")).Err()
		for _, c := range classes {
			if errors.Is(got, c.err) {
				t.Errorf("got class %s", c.name)
			}
		}
	})
}

func TestStatusError(t *testing.T) {
	body, _ := json.Marshal(map[string]any{"error": WireError(fmt.Errorf("gone: %w", errdefs.ErrNotFound))})
	if err := StatusError(http.StatusNotFound, body); !errdefs.IsNotFound(err) || err.Error() != "gone: not found" {
		t.Errorf("a JSON error answer = %v, want the node's error", err)
	}
	// A body that is not the node's (a proxy's page): the status says it.
	if err := StatusError(http.StatusServiceUnavailable, []byte("<html>")); !errdefs.IsUnavailable(err) {
		t.Errorf("a 503 without a JSON error = %v, want unavailable", err)
	}
}

func TestQueries_RoundTrip(t *testing.T) {
	ref := nodeapi.GroupRef{Key: "/s/rg/g", UID: "u1", Name: "g"}
	exec := nodeapi.ExecRequest{Group: ref, Container: "web", ID: "e1", Args: []string{"sh", "-c", "a & b"}, Rows: 30, Cols: 100}
	got, err := parseExecRequest(ExecQuery(exec))
	if err != nil || got.Group != ref || got.Container != "web" || got.ID != "e1" || len(got.Args) != 3 || got.Args[2] != "a & b" || got.Rows != 30 || got.Cols != 100 {
		t.Errorf("exec query = %+v, %v; want %+v", got, err, exec)
	}
	logReq := nodeapi.LogRequest{Group: ref, Container: "web", Tail: 5}
	if got, err := parseLogRequest(LogQuery(logReq)); err != nil || got != logReq {
		t.Errorf("log query = %+v, %v; want %+v", got, err, logReq)
	}
	parseLog := func(q url.Values) error { _, err := parseLogRequest(q); return err }
	parseExec := func(q url.Values) error { _, err := parseExecRequest(q); return err }
	base := func(kv ...string) url.Values {
		q := url.Values{"key": {"k"}, "uid": {"u"}, "container": {"c"}}
		for i := 0; i < len(kv); i += 2 {
			q[kv[i]] = append(q[kv[i]], kv[i+1])
		}
		return q
	}
	// Each bad query is a good one with one thing wrong.
	if err := parseLog(base()); err != nil {
		t.Fatalf("a good log query fails: %v", err)
	}
	if err := parseExec(base("id", "e", "args", "sh", "rows", "24")); err != nil {
		t.Fatalf("a good exec query fails: %v", err)
	}
	for _, tc := range []struct {
		name  string
		parse func(url.Values) error
		q     url.Values
	}{
		{"a request without a container", parseLog, url.Values{"key": {"k"}, "uid": {"u"}}},
		{"a request without a uid", parseLog, url.Values{"key": {"k"}, "container": {"c"}}},
		{"a negative tail", parseLog, base("tail", "-1")},
		{"an exec without a command", parseExec, base("id", "e")},
		{"an exec without an id", parseExec, base("args", "sh")},
		{"an exec with too many rows", parseExec, base("id", "e", "args", "sh", "rows", "70000")},
	} {
		if err := tc.parse(tc.q); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want invalid argument", tc.name, err)
		}
	}
}
