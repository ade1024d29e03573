// Package leader runs work on one server at a time. The servers campaign
// in etcd's election (concurrency.Election) on one key prefix; the winner
// runs the work until its session ends (it stops, crashes, or loses etcd
// for longer than the session's TTL), and the next candidate takes over.
//
// Being leader is a hint, not a lock: a leader cut off from etcd learns it
// lost only when its session expires, while the next may already lead.
// The work must therefore make revision-checked writes, as every
// controller does, so that two leaders for a moment cannot both win.
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// DefaultTTL is how long a leader that stopped renewing keeps the lead:
// the time a takeover after a crash takes, at most.
const DefaultTTL = 5 * time.Second

// Options configure Run.
type Options struct {
	Client *clientv3.Client
	// Prefix is the election's key prefix; every candidate uses the same.
	Prefix string
	// Identity names this candidate (the server's name).
	Identity string
	// TTL is the session's time to live; default DefaultTTL.
	TTL    time.Duration
	Logger *slog.Logger
}

// Leadership is what the election's key says about the leader.
type Leadership struct {
	Leader    string    `json:"leader"`
	ElectedAt time.Time `json:"electedAt"`
}

// Run campaigns until ctx ends and runs lead while this candidate leads;
// lead's context ends when the lead is lost. An error of lead ends Run.
func Run(ctx context.Context, opts Options, lead func(ctx context.Context) error) error {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("candidate", opts.Identity)
	for ctx.Err() == nil {
		err := term(ctx, opts, log, lead)
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, errLead) {
				return err
			}
			log.Warn("leader election failed; campaigning again", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// errLead marks an error of the work itself, not of the election.
var errLead = errors.New("leader work failed")

// term is one session: campaign, lead until the session ends, resign.
func term(ctx context.Context, opts Options, log *slog.Logger, lead func(context.Context) error) error {
	sess, err := concurrency.NewSession(opts.Client, concurrency.WithTTL(int(opts.TTL.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("start election session: %w", err)
	}
	defer sess.Close()
	// A session that expires while this candidate waits would leave it
	// waiting for a lead it can no longer get.
	campaignCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-campaignCtx.Done():
		}
	}()
	el := concurrency.NewElection(sess, opts.Prefix)
	if err := el.Campaign(campaignCtx, opts.Identity); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	l := Leadership{Leader: opts.Identity, ElectedAt: time.Now().UTC()}
	b, _ := json.Marshal(l)
	if err := el.Proclaim(campaignCtx, string(b)); err != nil {
		return fmt.Errorf("proclaim: %w", err)
	}
	log.Info("elected leader", "election", opts.Prefix)
	err = lead(campaignCtx)
	lost := sess.Ctx().Err() == nil && campaignCtx.Err() != nil && ctx.Err() == nil
	if ctx.Err() != nil {
		// Hand over at once rather than after the TTL.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		log.Info("resigned as leader")
	} else if lost || sess.Ctx().Err() != nil {
		log.Warn("lost the lead: the election session ended")
	}
	if err != nil && ctx.Err() == nil && campaignCtx.Err() == nil {
		return fmt.Errorf("%w: %w", errLead, err)
	}
	return nil
}

// Current is the leader of the election at prefix, as its key says; no
// leader is errdefs.ErrNotFound.
func Current(ctx context.Context, cli *clientv3.Client, prefix string) (Leadership, error) {
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Leadership{}, fmt.Errorf("read leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Leadership{}, fmt.Errorf("no leader: %w", errdefs.ErrNotFound)
	}
	var l Leadership
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		// Campaigning, not yet proclaimed: the value is the bare identity.
		l = Leadership{Leader: string(resp.Kvs[0].Value)}
	}
	return l, nil
}
