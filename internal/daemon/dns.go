package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/dns"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
)

// dnsService is the built-in DNS server and the controller that feeds it
// from the server's informers.
type dnsService struct {
	srv     *dns.Server
	records *dns.RecordSync
}

// newDNSService binds the DNS server's sockets, or returns nil when
// cfg.DNSListen is empty.
func newDNSService(cfg config.Server, in *controllers.Informers, log *slog.Logger) (*dnsService, error) {
	if cfg.DNSListen == "" {
		return nil, nil
	}
	var forward []string
	switch {
	case len(cfg.DNSForward) == 1 && cfg.DNSForward[0] == "none":
	case len(cfg.DNSForward) > 0:
		for _, f := range cfg.DNSForward {
			up, err := dns.NormalizeUpstream(f)
			if err != nil {
				return nil, err
			}
			forward = append(forward, up)
		}
	default:
		forward = dns.SystemUpstreams()
	}
	for _, up := range forward {
		if isSelf(up, cfg.DNSListen) {
			return nil, fmt.Errorf("--dns-forward %s is the DNS server's own address (--dns-listen %s): queries would loop", up, cfg.DNSListen)
		}
	}
	table := &dns.Table{}
	d := &dnsService{records: dns.NewRecordSync(in.Groups, in.Statuses, cfg.DNSZone, table, log)}
	srv, err := dns.Listen(dns.Options{Listen: cfg.DNSListen, Zone: cfg.DNSZone, Forward: forward, Records: table, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("start the DNS server (--dns-listen %q; \"\" disables it): %w", cfg.DNSListen, err)
	}
	d.srv = srv
	return d, nil
}

// run serves DNS and keeps the records current until ctx ends.
func (d *dnsService) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.records.Run(gctx) })
	g.Go(func() error { return d.srv.Serve(gctx) })
	return g.Wait()
}

// ensureTenant returns the installation's tenant id: the flag's, else the
// one in the store, made on the first start. Kept in the store rather
// than the data dir so that servers sharing an etcd agree on it.
func ensureTenant(ctx context.Context, st *store.Store, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	tenants := store.NewTyped[types.Tenant](st, "")
	for range 3 {
		t, _, err := tenants.Get(ctx, types.KeyTenant)
		if err == nil && t.ID != "" {
			return t.ID, nil
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return "", fmt.Errorf("read the tenant id: %w", err)
		}
		_, err = tenants.Create(ctx, types.KeyTenant, types.Tenant{ID: uuid.NewString()})
		if err != nil && !errdefs.IsAlreadyExists(err) {
			return "", fmt.Errorf("store the tenant id: %w", err)
		}
		// Created, or another server was first: read what is there.
	}
	return "", fmt.Errorf("store the tenant id: %w", errdefs.ErrConflict)
}

// isSelf reports whether the upstream up is the listen address itself: the
// same address, or a loopback one on the port of a wildcard listener.
func isSelf(up, listen string) bool {
	u, err := netip.ParseAddrPort(up)
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port != strconv.Itoa(int(u.Port())) {
		return false
	}
	if host == "" {
		return u.Addr().IsLoopback()
	}
	l, err := netip.ParseAddr(host)
	return err == nil && (l == u.Addr() || (l.IsUnspecified() && u.Addr().IsLoopback()))
}
