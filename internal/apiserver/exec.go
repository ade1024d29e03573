package apiserver

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/shlex"

	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/types"
)

// NodeServices finds the services of a node by name (logs, exec and
// attach of the groups bound to it): in process for the server's own
// agent, over the network for the others (nodeclient.Dialer). Declared
// here because only the API needs it.
type NodeServices interface {
	Service(ctx context.Context, node string) (nodeapi.Service, error)
}

// nodeService returns the services of the node g is bound to, and g as
// the node names it. A group not placed on a node yet has none.
func (s *Server) nodeService(ctx context.Context, g *types.ContainerGroup) (nodeapi.Service, nodeapi.GroupRef, error) {
	ref := nodeapi.GroupRef{Key: g.Key(), UID: g.UID, Name: g.Name}
	if s.nodeSvcs == nil {
		return nil, ref, armError(http.StatusNotImplemented, "NotSupported", "This server does not reach the nodes of container groups.")
	}
	if g.NodeName == "" {
		return nil, ref, armError(http.StatusConflict, "ContainerGroupTransitioning",
			fmt.Sprintf("The container group '%s' is pending: it is not placed on a node yet. Please retry later.", g.Name))
	}
	svc, err := s.nodeSvcs.Service(ctx, g.NodeName)
	if err != nil {
		return nil, ref, err
	}
	return svc, ref, nil
}

// Terminal sizes: what az sends when it cannot tell, and the largest
// accepted.
const (
	defaultRows = 24
	defaultCols = 80
	maxTermSize = 1000
)

// containerExecRequest is ContainerExecRequest of api-version 2023-05-01.
type containerExecRequest struct {
	Command      *string `json:"command"`
	TerminalSize *struct {
		Rows *int32 `json:"rows"`
		Cols *int32 `json:"cols"`
	} `json:"terminalSize"`
}

// containerSession is ContainerExecResponse and ContainerAttachResponse.
type containerSession struct {
	WebSocketURI string `json:"webSocketUri"`
	Password     string `json:"password"`
}

// execContainer hands out an exec session: a websocket URI on this server
// and a one-time password. The command runs only once the socket connects.
func (s *Server) execContainer(r *http.Request) (*response, error) {
	g, name, err := s.sessionContainer(r)
	if err != nil {
		return nil, err
	}
	var body containerExecRequest
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	args, err := parseCommand(body.Command)
	if err != nil {
		return nil, err
	}
	rows, cols, err := terminalSize(&body)
	if err != nil {
		return nil, err
	}
	if err := s.requireRunning(r, g, name); err != nil {
		return nil, err
	}
	sess, err := s.sessions.add(session{Kind: sessionExec, GroupKey: g.Key(), GroupUID: g.UID, Container: name, Command: args, Rows: rows, Cols: cols})
	if err != nil {
		return nil, err
	}
	s.log.Debug("exec session", "group", g.Key(), "container", name, "session", sess.ID, "command", args)
	uri := fmt.Sprintf("wss://%s%s%s?api-version=1.0&rows=%d&cols=%d", r.Host, execStreamPrefix, sess.ID, rows, cols)
	return &response{status: http.StatusOK, body: containerSession{WebSocketURI: uri, Password: sess.Password}}, nil
}

// attachContainer hands out an attach session. The request has no body.
func (s *Server) attachContainer(r *http.Request) (*response, error) {
	g, name, err := s.sessionContainer(r)
	if err != nil {
		return nil, err
	}
	if err := s.requireRunning(r, g, name); err != nil {
		return nil, err
	}
	sess, err := s.sessions.add(session{Kind: sessionAttach, GroupKey: g.Key(), GroupUID: g.UID, Container: name})
	if err != nil {
		return nil, err
	}
	s.log.Debug("attach session", "group", g.Key(), "container", name, "session", sess.ID)
	uri := fmt.Sprintf("wss://%s%s%s?api-version=1.0", r.Host, attachStreamPrefix, sess.ID)
	return &response{status: http.StatusOK, body: containerSession{WebSocketURI: uri, Password: sess.Password}}, nil
}

// sessionContainer loads the group and checks that it has the container
// named in the path.
func (s *Server) sessionContainer(r *http.Request) (*types.ContainerGroup, string, error) {
	if s.nodeSvcs == nil {
		return nil, "", armError(http.StatusNotImplemented, "NotSupported", "This server does not run exec or attach sessions.")
	}
	g, err := s.group(r)
	if err != nil {
		return nil, "", err
	}
	name := r.PathValue("container")
	for _, c := range g.Spec.Containers {
		if c.Name == name {
			return g, name, nil
		}
	}
	return nil, "", armError(http.StatusNotFound, "ContainerNotFound",
		fmt.Sprintf("The container '%s' is not found in container group '%s'.", name, g.Name))
}

// requireRunning refuses a session for a container that the agent does not
// report running. The node checks again when the socket connects.
func (s *Server) requireRunning(r *http.Request, g *types.ContainerGroup, name string) error {
	if g.Deleting {
		return armError(http.StatusConflict, "ContainerGroupTransitioning",
			fmt.Sprintf("The container group '%s' is being deleted.", g.Name))
	}
	state := "Unknown"
	if st := s.groupStatus(r, g); st != nil {
		if cs := st.Container(name); cs != nil && cs.Current.State != "" {
			state = cs.Current.State
		}
	}
	if state != types.ContainerRunning || g.Stopped {
		return armError(http.StatusConflict, "ContainerNotRunning",
			fmt.Sprintf("The container '%s' in container group '%s' is not running (state '%s'). Exec and attach need a running container.", name, g.Name, state))
	}
	return nil
}

// parseCommand splits the exec command into words with shell rules (quotes
// and backslashes, no expansion). ACI takes one executable without
// arguments; a command without spaces means the same here.
func parseCommand(cmd *string) ([]string, error) {
	if cmd == nil || *cmd == "" {
		return nil, badRequest("InvalidExecCommand", "The exec request needs a 'command'.")
	}
	args, err := shlex.Split(*cmd)
	if err != nil {
		return nil, badRequest("InvalidExecCommand", fmt.Sprintf("The command '%s' cannot be split into words: %v.", *cmd, err))
	}
	if len(args) == 0 || args[0] == "" {
		return nil, badRequest("InvalidExecCommand", fmt.Sprintf("The command '%s' names no executable.", *cmd))
	}
	return args, nil
}

// terminalSize returns the requested size, 24×80 for what is left out.
func terminalSize(body *containerExecRequest) (rows, cols uint16, err error) {
	rows, cols = defaultRows, defaultCols
	if body.TerminalSize == nil {
		return rows, cols, nil
	}
	for _, d := range []struct {
		name string
		v    *int32
		out  *uint16
	}{{"rows", body.TerminalSize.Rows, &rows}, {"cols", body.TerminalSize.Cols, &cols}} {
		if d.v == nil || *d.v == 0 {
			continue
		}
		if *d.v < 0 || *d.v > maxTermSize {
			return 0, 0, badRequest("InvalidTerminalSize",
				fmt.Sprintf("The terminal size %s value %d is invalid. It must be between 1 and %d.", d.name, *d.v, maxTermSize))
		}
		*d.out = uint16(*d.v)
	}
	return rows, cols, nil
}
