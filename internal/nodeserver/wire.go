package nodeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"

	"github.com/berth-dev/berth/internal/nodeapi"
)

// The protocol, shared with internal/nodeclient. A request names the
// group and container in its query (key, uid, name, container); logs add
// tail, exec adds id, args (repeated, in order), rows and cols. Logs answer
// text/plain. Exec and attach are websockets: binary frames carry stdin
// (to the node) and output (from the node); text frames carry a JSON
// Message. The node ends a session with one final Message (the exit code,
// the end of the output, or an error), then a close frame. The client
// ends it early with a close frame: the node stops the session, then
// still sends the final Message and its close frame, so a client that
// waits for them knows that nothing of the session is left on the node.
const (
	PathLogs   = "/v1/logs"
	PathExec   = "/v1/exec"
	PathAttach = "/v1/attach"
)

// Message is a text frame of a stream.
type Message struct {
	// ExitCode (node to client, final): the exec's process exited.
	ExitCode *uint32 `json:"exitCode,omitempty"`
	// End (node to client, final): the attached output ended for good.
	End bool `json:"end,omitempty"`
	// Error (node to client, final): the session failed.
	Error *Error `json:"error,omitempty"`
	// StdinEOF (client to node): no more stdin.
	StdinEOF bool `json:"stdinEOF,omitempty"`
}

// Final reports whether m ends the session.
func (m *Message) Final() bool { return m.ExitCode != nil || m.End || m.Error != nil }

// Error is an error on the wire: its errdefs class by name, and its
// message. It is also the JSON body of an HTTP error answer.
type Error struct {
	Class   string `json:"class,omitempty"`
	Message string `json:"message"`
}

// classes are the error classes that cross the wire, by name.
var classes = []struct {
	name string
	err  error
}{
	{"NotFound", errdefs.ErrNotFound},
	{"InvalidArgument", errdefs.ErrInvalidArgument},
	{"AlreadyExists", errdefs.ErrAlreadyExists},
	{"Conflict", errdefs.ErrConflict},
	{"FailedPrecondition", errdefs.ErrFailedPrecondition},
	{"Unauthenticated", errdefs.ErrUnauthenticated},
	{"PermissionDenied", errdefs.ErrPermissionDenied},
	{"Unavailable", errdefs.ErrUnavailable},
	{"ResourceExhausted", errdefs.ErrResourceExhausted},
	{"NotImplemented", errdefs.ErrNotImplemented},
	{"Aborted", errdefs.ErrAborted},
	{"OutOfRange", errdefs.ErrOutOfRange},
	{"DataLoss", errdefs.ErrDataLoss},
	{"Internal", errdefs.ErrInternal},
	{"Unknown", errdefs.ErrUnknown},
	{"Canceled", context.Canceled},
	{"DeadlineExceeded", context.DeadlineExceeded},
}

// WireError is err as it crosses the wire.
func WireError(err error) *Error {
	e := &Error{Message: err.Error()}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			e.Class = c.name
			break
		}
	}
	return e
}

// Err is the error e stands for: its message, of its class (errors.Is
// holds for the errdefs sentinel); an unknown class is no class.
func (e *Error) Err() error {
	for _, c := range classes {
		if c.name == e.Class {
			return &remoteError{msg: e.Message, class: c.err}
		}
	}
	return errors.New(e.Message)
}

// StatusError is the error of an HTTP error answer: the JSON Error of its
// body, or else the class its status stands for.
func StatusError(status int, body []byte) error {
	var e struct{ Error *Error }
	if json.Unmarshal(body, &e) == nil && e.Error != nil {
		return e.Error.Err()
	}
	return fmt.Errorf("node server answered %s: %w", http.StatusText(status), errhttp.ToNative(status))
}

type remoteError struct {
	msg   string
	class error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.class }

// Query is the query naming ref's container.
func Query(ref nodeapi.GroupRef, container string) url.Values {
	return url.Values{"key": {ref.Key}, "uid": {ref.UID}, "name": {ref.Name}, "container": {container}}
}

// LogQuery is the query of a logs request.
func LogQuery(req nodeapi.LogRequest) url.Values {
	q := Query(req.Group, req.Container)
	if req.Tail > 0 {
		q.Set("tail", strconv.Itoa(req.Tail))
	}
	return q
}

// ExecQuery is the query of an exec request (its streams aside).
func ExecQuery(req nodeapi.ExecRequest) url.Values {
	q := Query(req.Group, req.Container)
	q.Set("id", req.ID)
	q["args"] = req.Args
	if req.Rows > 0 || req.Cols > 0 {
		q.Set("rows", strconv.Itoa(int(req.Rows)))
		q.Set("cols", strconv.Itoa(int(req.Cols)))
	}
	return q
}

// parseRef reads the group and container of a query.
func parseRef(q url.Values) (nodeapi.GroupRef, string, error) {
	ref := nodeapi.GroupRef{Key: q.Get("key"), UID: q.Get("uid"), Name: q.Get("name")}
	container := q.Get("container")
	if ref.Key == "" || ref.UID == "" || container == "" {
		return ref, "", fmt.Errorf("key, uid and container are required: %w", errdefs.ErrInvalidArgument)
	}
	if ref.Name == "" {
		ref.Name = ref.Key
	}
	return ref, container, nil
}

func parseLogRequest(q url.Values) (nodeapi.LogRequest, error) {
	ref, container, err := parseRef(q)
	if err != nil {
		return nodeapi.LogRequest{}, err
	}
	req := nodeapi.LogRequest{Group: ref, Container: container}
	if t := q.Get("tail"); t != "" {
		if req.Tail, err = strconv.Atoi(t); err != nil || req.Tail < 0 {
			return req, fmt.Errorf("tail %q is not a non-negative integer: %w", t, errdefs.ErrInvalidArgument)
		}
	}
	return req, nil
}

func parseExecRequest(q url.Values) (nodeapi.ExecRequest, error) {
	ref, container, err := parseRef(q)
	if err != nil {
		return nodeapi.ExecRequest{}, err
	}
	req := nodeapi.ExecRequest{Group: ref, Container: container, ID: q.Get("id"), Args: q["args"]}
	if req.ID == "" || len(req.Args) == 0 || req.Args[0] == "" {
		return req, fmt.Errorf("an exec id and a command are required: %w", errdefs.ErrInvalidArgument)
	}
	for _, d := range []struct {
		name string
		out  *uint16
	}{{"rows", &req.Rows}, {"cols", &req.Cols}} {
		v := q.Get(d.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return req, fmt.Errorf("%s %q is not a terminal size: %w", d.name, v, errdefs.ErrInvalidArgument)
		}
		*d.out = uint16(n)
	}
	return req, nil
}
