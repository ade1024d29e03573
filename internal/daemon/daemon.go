// Package daemon is the composition root of `berth server`: it builds the
// store, the API and the in-process agent from the configuration and runs
// them until the context ends.
package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/auth"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/controllers"
	"github.com/berth-dev/berth/internal/controllers/lifecycle"
	"github.com/berth-dev/berth/internal/controllers/nodes"
	"github.com/berth-dev/berth/internal/controllers/scheduler"
	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/join"
	"github.com/berth-dev/berth/internal/leader"
	"github.com/berth-dev/berth/internal/nodeapi"
	"github.com/berth-dev/berth/internal/nodeclient"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/sealing"
	"github.com/berth-dev/berth/internal/store"
	"github.com/berth-dev/berth/internal/types"
	"github.com/berth-dev/berth/internal/version"
)

// ClientConfigFile is written to the data dir once the API answers.
const ClientConfigFile = "client.json"

// ClientConfig is what a client needs to reach the API: the CLI and tests
// read it.
type ClientConfig struct {
	Endpoint string `json:"endpoint"`
	// Endpoints are the other servers of the cluster, for a client to
	// fail over to.
	Endpoints []string `json:"endpoints,omitempty"`
	CAFile    string   `json:"caFile"`
	Token     string   `json:"token"`
}

// RunServer runs the all-in-one server until ctx ends.
func RunServer(ctx context.Context, cfg config.Server, log *slog.Logger) (retErr error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The key first: a bad key file stops the start before anything is made.
	var storeOpts []store.Option
	if cfg.EncryptionKeyFile != "" { // issue 7: secrets encrypted at rest
		key, err := sealing.LoadKeyFile(cfg.EncryptionKeyFile)
		if err != nil {
			return err
		}
		storeOpts = append(storeOpts, store.WithKey(key))
		log.Info("secrets in the store are encrypted", "key_id", key.ID())
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	clientFile := filepath.Join(dataDir, ClientConfigFile)
	// The file announces a serving API; until this start answers, it must not.
	if err := os.Remove(clientFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	host, _, _ := net.SplitHostPort(cfg.Listen)
	name, err := serverName(cfg.ServerName)
	if err != nil {
		return err
	}
	// The PKI and the store: a single embedded member, one of several
	// servers' members, or an external cluster (cluster.go).
	ss, err := openStore(ctx, cfg, dataDir, name, host, log)
	if err != nil {
		return err
	}
	defer ss.close()
	bundle, cli, etcdErr := ss.bundle, ss.cli, ss.etcdErr
	tokens, err := loadTokens(cfg.TokensFile, bundle.Token)
	if err != nil {
		return err
	}
	st := store.New(cli, "/berth/", storeOpts...)
	tenant, err := ensureTenant(ctx, st, cfg.TenantID) // issue 5: hashed DNS names
	if err != nil {
		return err
	}

	// The controllers share one cache of the store (informers): the
	// scheduler places groups, the node controller follows leases and
	// drains, the lifecycle controller finalises deletes.
	informers := controllers.NewInformers(st, log.With("component", "informers"))
	policy, err := scheduler.ParsePolicy(cfg.SchedulerPolicy)
	if err != nil {
		return err
	}
	sched := scheduler.New(scheduler.Options{Store: st, Informers: informers, PublicSubnet: netip.MustParsePrefix(cfg.Subnet), Policy: policy, Logger: log.With("component", "scheduler")})
	nodeCtl := nodes.New(nodes.Options{Store: st, Informers: informers, Logger: log.With("component", "nodes")})
	life := lifecycle.New(lifecycle.Options{Store: st, Informers: informers, Logger: log.With("component", "lifecycle")})
	nodeAPI := nodeplane.NewServer(nodeplane.ServerOptions{Store: st, Informers: informers, PublicSubnet: cfg.Subnet})

	// The in-process agent is one node like any other, registered through
	// the same node protocol, only without a network in between.
	var local *node
	if cfg.LocalAgent {
		name, err := nodeName(cfg.NodeName)
		if err != nil {
			return err
		}
		cfg.NodeName = name
		var closeNode func()
		local, closeNode, err = newNode(ctx, nodeParams{
			cfg: cfg.Node, dataDir: dataDir, subnet: cfg.Subnet, plane: nodeAPI.Local(name),
			addresses: localAddresses(host), log: log.With("component", "agent", "node", name),
		})
		if err != nil {
			return err
		}
		defer closeNode()
	}
	apiOpts := apiserver.Options{Store: st, Tokens: tokens, Logger: log.With("component", "api"),
		PublicSubnet: cfg.Subnet, // virtual networks may not overlap it
		TenantID:     tenant,     // DNS name labels
		DNSZone:      cfg.DNSZone,
		Nodes:        nodeAPI,
		NodeIdentity: pki.NodeName,
		// Agents join with a single-use token for a certificate of the CA.
		JoinTokens: join.New(st, nil),
		SignNode: func(csr []byte, node string, ips []net.IP) ([]byte, error) {
			return bundle.SignNode(csr, node, ips, nodeCertTTL)
		},
		CAPEM:   bundle.CAPEM(),
		Cluster: clusterOps{members: embedetcd.NewMembers(cli), cli: cli},
	}
	apiOpts.Snapshot = embedetcd.Snapshotter(cli) // berth cluster snapshot save
	if ss.clustered {
		key, err := bundle.CAKeyPEM()
		if err != nil {
			return err
		}
		apiOpts.ClusterSecrets = &apiserver.ClusterSecrets{CAKeyPEM: key, AdminToken: bundle.Token}
	}
	// Logs, exec and attach reach the group's node: the local agent in
	// process, the others' node servers with the API's client certificate
	// (the kubelet pattern).
	var localSvc nodeapi.Service
	if local != nil {
		localSvc = local.agent.Service()
	}
	// Nodes are looked up in the controllers' cache: every logs, exec
	// and attach request needs its group's node endpoint.
	apiOpts.NodeServices = nodeclient.NewDialer(cfg.NodeName, localSvc,
		func(ctx context.Context, name string) (types.Node, error) {
			if err := informers.Nodes.WaitSynced(ctx); err != nil {
				return types.Node{}, err
			}
			n, ok := informers.Nodes.Get(name)
			if !ok {
				return types.Node{}, fmt.Errorf("node %s: %w", name, errdefs.ErrNotFound)
			}
			return n, nil
		},
		&tls.Config{RootCAs: bundle.CAPool(), Certificates: []tls.Certificate{bundle.APIClientCert()}, MinVersion: tls.VersionTLS12})
	api := apiserver.New(apiOpts)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler: api,
		// Nodes present their certificate; everyone else a bearer token.
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{bundle.ServerCert}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: bundle.CAPool()},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	dnsSvc, err := newDNSService(cfg, informers, log.With("component", "dns")) // issue 5
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	if dnsSvc != nil {
		g.Go(func() error { return dnsSvc.run(gctx) })
	}
	g.Go(func() error { return informers.Run(gctx) })
	// Every server serves the API, DNS and its informers; the
	// controllers run on the elected leader only (internal/leader).
	g.Go(func() error {
		return leader.Run(gctx, leader.Options{Client: cli, Prefix: electionPrefix, Identity: name, Logger: log.With("component", "leader")},
			func(ctx context.Context) error {
				lg, lctx := errgroup.WithContext(ctx)
				lg.Go(func() error { return sched.Run(lctx) })
				lg.Go(func() error { return nodeCtl.Run(lctx) })
				lg.Go(func() error { return life.Run(lctx) })
				return lg.Wait()
			})
	})
	if local != nil {
		g.Go(func() error { return local.agent.Run(gctx) })
	}
	g.Go(func() error { return serveTLS(gctx, "API", srv, ln, 5*time.Second, api.CloseStreams, log) })
	if cfg.PprofListen != "" {
		g.Go(func() error { return servePprof(gctx, cfg.PprofListen, log) })
	}
	if etcdErr != nil {
		g.Go(func() error {
			select {
			case err := <-etcdErr:
				return fmt.Errorf("embedded etcd: %w", err)
			case <-gctx.Done():
				return nil
			}
		})
	}
	g.Go(func() error {
		cc := ClientConfig{Endpoint: "https://" + advertised(ln.Addr(), host), CAFile: bundle.CAPath, Token: bundle.Token}
		if err := waitServing(gctx, cc); err != nil {
			return err
		}
		others, err := announceServer(gctx, st, types.Server{Name: name, APIURL: cc.Endpoint, PeerURL: ss.peerURL,
			Version: version.Version, StartedAt: time.Now().UTC()})
		if err != nil {
			return err
		}
		cc.Endpoints = others
		b, _ := json.MarshalIndent(cc, "", "  ")
		if err := pki.WriteFileAtomic(clientFile, append(b, '\n'), 0o600); err != nil {
			return err
		}
		log.Info("berth server ready", "endpoint", cc.Endpoint, "client_config", clientFile)
		return nil
	})
	return g.Wait()
}

// nodeCertTTL is how long a node's certificate is valid. Nodes do not
// renew it yet: a year keeps that far off.
const nodeCertTTL = 365 * 24 * time.Hour

// runtimeStateDir is where runc keeps the state of Berth's containers. It
// must not survive a reboot (runc refuses ids it still has state for), so
// it lives on /run, one dir per data dir so that servers never share it.
func runtimeStateDir(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/run/berth", hex.EncodeToString(sum[:6]))
}

// advertised is the address clients should use: a wildcard listener is
// reached on loopback.
func advertised(addr net.Addr, host string) string {
	_, port, _ := net.SplitHostPort(addr.String())
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// waitServing polls the API as a client would until it answers.
func waitServing(ctx context.Context, cc ClientConfig) error {
	pem, err := os.ReadFile(cc.CAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cc.Endpoint+"/subscriptions/-/resourcegroups", nil)
		req.Header.Set("Authorization", "Bearer "+cc.Token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// localAddresses are the addresses of the in-process agent's node: the
// API's listen address when it is one the other nodes can reach.
func localAddresses(host string) []string {
	a, err := netip.ParseAddr(host)
	if err != nil || a.IsLoopback() || a.IsUnspecified() || !a.Is4() {
		return nil
	}
	return []string{a.String()}
}

// loadTokens builds the API's principals: the admin token, plus those of the
// tokens file when one is configured.
func loadTokens(file, adminToken string) (*auth.Tokens, error) {
	var principals []auth.Principal
	if file != "" {
		var err error
		if principals, err = auth.LoadFile(file); err != nil {
			return nil, err
		}
	}
	t, err := auth.NewTokens(adminToken, principals)
	if err != nil {
		return nil, fmt.Errorf("--tokens-file %s: %w", file, err)
	}
	return t, nil
}

// announceServer records where this server's API is and returns the
// other servers' API URLs.
func announceServer(ctx context.Context, st *store.Store, self types.Server) ([]string, error) {
	servers := store.NewTyped[types.Server](st, types.PrefixServers)
	if _, err := servers.Put(ctx, self.Name, self); err != nil {
		return nil, fmt.Errorf("announce server %s: %w", self.Name, err)
	}
	items, _, err := servers.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	var others []string
	for _, it := range items {
		if it.Value.Name != self.Name && it.Value.APIURL != "" {
			others = append(others, it.Value.APIURL)
		}
	}
	return others, nil
}
