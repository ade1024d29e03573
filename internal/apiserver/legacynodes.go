package apiserver

import (
	"context"
	"io"
	"net/http"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// The API of a single node, before Options.NodeServices: Options.Logs and
// Options.Execer reach the in-process agent for every group, placed or
// not. legacyNodes serves them as NodeServices. This file goes once the
// daemon passes NodeServices.

// LogReader reads a container's log.
//
// Deprecated: pass Options.NodeServices.
type LogReader interface {
	ReadLog(ctx context.Context, g *types.ContainerGroup, container string, tail int) (string, error)
}

// Execer runs exec and attach sessions.
//
// Deprecated: pass Options.NodeServices.
type Execer interface {
	Exec(ctx context.Context, req ExecRequest) (exitCode uint32, err error)
	Attach(ctx context.Context, req AttachRequest) error
}

// ExecRequest is one exec session of an Execer.
//
// Deprecated: see nodeapi.ExecRequest.
type ExecRequest struct {
	Group      *types.ContainerGroup
	Container  string
	ID         string
	Args       []string
	Rows, Cols uint16
	Stdin      io.Reader
	Output     io.Writer
}

// AttachRequest is one attach session of an Execer.
//
// Deprecated: see nodeapi.AttachRequest.
type AttachRequest struct {
	Group     *types.ContainerGroup
	Container string
	Output    io.Writer
}

// legacyNodes is every node, and no node, served by one LogReader and
// Execer.
type legacyNodes struct {
	logs   LogReader
	execer Execer
}

func (l legacyNodes) Service(context.Context, string) (nodeapi.Service, error) { return l, nil }

// group is as much of the group as the agent's streams and files use.
func (legacyNodes) group(ref nodeapi.GroupRef) *types.ContainerGroup {
	return &types.ContainerGroup{Name: ref.Name, UID: ref.UID}
}

// notSupported answers for what the server was not given.
var notSupported = armError(http.StatusNotImplemented, "NotSupported", "This server does not serve this request.")

func (l legacyNodes) ReadLog(ctx context.Context, req nodeapi.LogRequest) (string, error) {
	if l.logs == nil {
		return "", notSupported
	}
	return l.logs.ReadLog(ctx, l.group(req.Group), req.Container, req.Tail)
}

func (l legacyNodes) Exec(ctx context.Context, req nodeapi.ExecRequest) (uint32, error) {
	if l.execer == nil {
		return 0, notSupported
	}
	return l.execer.Exec(ctx, ExecRequest{
		Group: l.group(req.Group), Container: req.Container, ID: req.ID, Args: req.Args,
		Rows: req.Rows, Cols: req.Cols, Stdin: req.Stdin, Output: req.Output,
	})
}

func (l legacyNodes) Attach(ctx context.Context, req nodeapi.AttachRequest) error {
	if l.execer == nil {
		return notSupported
	}
	return l.execer.Attach(ctx, AttachRequest{Group: l.group(req.Group), Container: req.Container, Output: req.Output})
}
