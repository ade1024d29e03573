// Package nodeapi is the contract between the API server and the node
// services of an agent: reading a container's log, exec and attach. The
// API reaches the node a group is bound to through it, in process for the
// server's own agent and over mutually authenticated HTTPS for a remote
// one (the kubelet pattern), so both sides share these request types.
//
// Errors keep their errdefs class across the network: a container that is
// not there is errdefs.ErrNotFound, one that does not run
// errdefs.ErrFailedPrecondition, a node that cannot be reached
// errdefs.ErrUnavailable.
package nodeapi

import (
	"context"
	"io"
)

// GroupRef names one incarnation of a container group on a node.
type GroupRef struct {
	// Key is the group's store key (types.GroupKey).
	Key string `json:"key"`
	// UID is the incarnation; the node refuses an older or newer one.
	UID string `json:"uid"`
	// Name is the group's name, for messages.
	Name string `json:"name"`
}

// LogRequest asks for a container's output.
type LogRequest struct {
	Group     GroupRef `json:"group"`
	Container string   `json:"container"`
	// Tail is how many of the last lines to return; 0 means all of it
	// (up to the node's limit of 4 MB).
	Tail int `json:"tail,omitempty"`
}

// ExecRequest is one exec session: a command run with a terminal in a
// running container.
type ExecRequest struct {
	Group     GroupRef
	Container string
	// ID names the exec process on the node, unique per session.
	ID string
	// Args is the command split into words; Args[0] is the executable.
	Args       []string
	Rows, Cols uint16
	// Stdin feeds the terminal; Output receives what it prints.
	Stdin  io.Reader
	Output io.Writer
}

// AttachRequest is one attach session: the container's live output.
type AttachRequest struct {
	Group     GroupRef
	Container string
	Output    io.Writer
}

// Service is what a node offers the API for the groups bound to it.
type Service interface {
	// ReadLog returns the container's output (see LogRequest).
	ReadLog(ctx context.Context, req LogRequest) (string, error)
	// Exec runs the command until it exits (its exit code) or ctx ends
	// (it is killed). Nothing of the process stays on the node when it
	// returns.
	Exec(ctx context.Context, req ExecRequest) (exitCode uint32, err error)
	// Attach writes the container's live output to req.Output until ctx
	// ends or the output ends for good (group deleted).
	Attach(ctx context.Context, req AttachRequest) error
}
