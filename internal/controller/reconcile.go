package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/berth-dev/berth/internal/log"
)

// Reconciler converges one object, named by its key, on its desired
// state. It is level-triggered: it reads what it needs, compares and acts,
// so running it twice, or for an object that is gone, is harmless.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (Result, error)
}

// ReconcileFunc adapts a function to a Reconciler.
type ReconcileFunc func(ctx context.Context, key string) (Result, error)

// Reconcile calls f.
func (f ReconcileFunc) Reconcile(ctx context.Context, key string) (Result, error) { return f(ctx, key) }

// Result tells the controller what to do with a key after a pass that did
// not fail: RequeueAfter > 0 runs it again then (a timer of the object,
// such as a back-off or a lease expiry).
type Result struct {
	RequeueAfter time.Duration
}

// terminalError is an error that retrying cannot fix: the key is not
// retried until something changes it again.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Terminal marks err as one that retrying cannot fix (bad input): the
// controller logs it and does not retry the key.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err}
}

// IsTerminal reports whether err was marked with Terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

// Options configure a Controller.
type Options struct {
	// Workers is how many keys are reconciled at once; default 1. A key
	// is never reconciled by two workers at once.
	Workers int
	Logger  *slog.Logger
	// Backoff paces the retries of a failing key; default DefaultBackoff.
	Backoff Backoff
}

// Controller runs a Reconciler for the keys put in its queue.
type Controller struct {
	name  string
	r     Reconciler
	opts  Options
	log   *slog.Logger
	queue *Queue
}

// New returns a controller called name; Run starts its workers.
func New(name string, r Reconciler, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Controller{name: name, r: r, opts: opts, log: opts.Logger.With("controller", name), queue: NewQueue(opts.Backoff)}
}

// Name is the controller's name.
func (c *Controller) Name() string { return c.name }

// Enqueue asks for a reconcile of key.
func (c *Controller) Enqueue(key string) { c.queue.Add(key) }

// EnqueueAfter asks for a reconcile of key once d has passed.
func (c *Controller) EnqueueAfter(key string, d time.Duration) { c.queue.AddAfter(key, d) }

// Queue is the controller's queue.
func (c *Controller) Queue() *Queue { return c.queue }

// Run reconciles until ctx ends, then waits for the passes in progress.
// The queue outlives Run: keys added meanwhile wait, and Run may be
// called again, as a server that leads again after losing the lead does.
// ShutDown ends the queue for good.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	wg.Wait()
	return nil
}

// ShutDown ends the controller's queue; Run cannot be called again.
func (c *Controller) ShutDown() { c.queue.ShutDown() }

func (c *Controller) processNext(ctx context.Context) bool {
	key, ok := c.queue.GetContext(ctx)
	if !ok {
		return false
	}
	defer c.queue.Done(key)
	rctx := log.WithLogger(ctx, c.log.With("reconcile_id", uuid.NewString()[:8], "key", key))
	res, err := c.reconcile(rctx, key)
	switch {
	case ctx.Err() != nil:
		// Cut short: the next Run owes the key a whole pass.
		c.queue.Add(key)
	case err != nil && IsTerminal(err):
		log.G(rctx).Warn("reconcile failed for good; waiting for a change", "error", err)
		c.queue.Forget(key)
	case err != nil:
		n := c.queue.Failures(key) + 1
		log.G(rctx).Warn("reconcile failed; retrying", "error", err, "attempt", n, "in", c.queue.backoff.Delay(n))
		c.queue.AddRateLimited(key)
	default:
		c.queue.Forget(key)
		if res.RequeueAfter > 0 {
			c.queue.AddAfter(key, res.RequeueAfter)
		}
	}
	return true
}

// reconcile runs one pass, turning a panic into an error so that one bad
// object cannot take the process down.
func (c *Controller) reconcile(ctx context.Context, key string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in reconcile of %q: %v", key, p)
		}
	}()
	return c.r.Reconcile(ctx, key)
}
