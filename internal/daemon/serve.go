package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// serveTLS serves srv on ln until ctx ends, then shuts it down: busy
// connections get grace to finish, and are cut after it (a client's
// spare connection, which Shutdown counts as busy until it is used or
// 5 s old, must not fail the shutdown). Shutdown leaves hijacked
// connections alone, so closeStreams ends the websocket sessions (exec
// and attach), whose processes are then removed.
func serveTLS(ctx context.Context, what string, srv *http.Server, ln net.Listener, grace time.Duration, closeStreams func(), log *slog.Logger) error {
	served := make(chan error, 1)
	go func() {
		err := srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else if err != nil {
			err = fmt.Errorf("serve %s: %w", what, err)
		}
		served <- err
	}()
	select {
	case err := <-served:
		closeStreams()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn(what+" connections still open after the grace; closing them", "grace", grace)
		err = srv.Close()
	}
	closeStreams()
	if serr := <-served; err == nil {
		err = serr
	}
	return err
}
