package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// TerminalSize is the size of the terminal an exec session starts with.
type TerminalSize struct {
	Rows int32 `json:"rows,omitempty"`
	Cols int32 `json:"cols,omitempty"`
}

// ExecRequest is the body of Containers_ExecuteCommand. ACI runs one
// executable without arguments.
type ExecRequest struct {
	Command      string        `json:"command"`
	TerminalSize *TerminalSize `json:"terminalSize,omitempty"`
}

// StreamEndpoint is the answer of exec and attach: a websocket URL and the
// one-time password that opens it.
type StreamEndpoint struct {
	WebSocketURI string `json:"webSocketUri"`
	Password     string `json:"password"`
}

// Exec asks the server to start command in a container and returns where
// to connect to its terminal.
func (c *Client) Exec(ctx context.Context, ref GroupRef, container string, req ExecRequest) (*StreamEndpoint, error) {
	return c.stream(ctx, ref, container, "exec", req)
}

// Attach asks the server for a stream of a container's output.
func (c *Client) Attach(ctx context.Context, ref GroupRef, container string) (*StreamEndpoint, error) {
	return c.stream(ctx, ref, container, "attach", nil)
}

func (c *Client) stream(ctx context.Context, ref GroupRef, container, verb string, body any) (*StreamEndpoint, error) {
	resp, err := c.do(ctx, request{method: http.MethodPost, path: ref.Path() + "/containers/" + url.PathEscape(container) + "/" + verb, apiVersion: armv1.APIVersion, body: body})
	if err != nil {
		return nil, err
	}
	var ep StreamEndpoint
	if err := decodeJSON(resp.body, &ep); err != nil {
		return nil, err
	}
	if ep.WebSocketURI == "" {
		return nil, fmt.Errorf("%s answer has no webSocketUri", verb)
	}
	return &ep, nil
}

func (c *Client) dialer() *websocket.Dialer {
	return &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		TLSClientConfig:  c.tls.Clone(),
		HandshakeTimeout: 15 * time.Second,
	}
}

// DialExec opens an exec session: a websocket with no auth header whose
// first message is the password, as azure-cli does.
func (c *Client) DialExec(ctx context.Context, ep *StreamEndpoint) (*websocket.Conn, error) {
	conn, _, err := c.dialer().DialContext(ctx, ep.WebSocketURI, nil)
	if err != nil {
		return nil, fmt.Errorf("connect to exec session: %w", err)
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(ep.Password)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send exec password: %w", err)
	}
	return conn, nil
}

// DialAttach opens an attach stream, authenticated by the password in the
// Authorization header as the ACI spec says.
func (c *Client) DialAttach(ctx context.Context, ep *StreamEndpoint) (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("Authorization", ep.Password)
	conn, _, err := c.dialer().DialContext(ctx, ep.WebSocketURI, h)
	if err != nil {
		return nil, fmt.Errorf("connect to attach stream: %w", err)
	}
	return conn, nil
}

// Pipe copies stdin (when not nil) to conn as binary frames and every frame
// from conn to stdout, until the server closes the socket (nil) or ctx ends
// (ctx's error; a close frame is sent first).
func Pipe(ctx context.Context, conn *websocket.Conn, stdin io.Reader, stdout io.Writer) error {
	defer conn.Close()
	readErr := make(chan error, 1)
	go func() {
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			if _, err := stdout.Write(msg); err != nil {
				readErr <- fmt.Errorf("write output: %w", err)
				return
			}
		}
	}()
	if stdin != nil {
		// This goroutine may stay blocked in Read after Pipe returns; the
		// caller owns stdin and the process ends soon after.
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if werr := conn.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	select {
	case err := <-readErr:
		var ce *websocket.CloseError
		if errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway || ce.Code == websocket.CloseNoStatusReceived) {
			return nil
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return fmt.Errorf("stream: %w", err)
	case <-ctx.Done():
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		return ctx.Err()
	}
}
