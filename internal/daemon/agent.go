package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/nodeplane"
	"github.com/berth-dev/berth/internal/nodeserver"
	"github.com/berth-dev/berth/internal/pki"
	"github.com/berth-dev/berth/internal/types"
)

// DefaultNodeServerPort is the node server's port when --listen is not
// given (the kubelet's).
const DefaultNodeServerPort = "10250"

// RunAgent runs `berth agent` until ctx ends: it joins the cluster once
// (a join token for a certificate), then registers its node, keeps its
// lease, runs the groups bound to it and serves their logs, exec and
// attach to the API over mutual TLS. It never touches etcd.
func RunAgent(ctx context.Context, cfg config.Agent, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	name, err := nodeName(cfg.NodeName)
	if err != nil {
		return err
	}
	cfg.NodeName = name
	caPEM, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("--ca-file %s holds no PEM certificate", cfg.CAFile)
	}
	cert, err := nodeCertificate(ctx, cfg, dataDir, pool, log)
	if err != nil {
		return err
	}
	clientTLS := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	listen := cfg.Listen
	if listen == "" {
		listen = net.JoinHostPort(cfg.AdvertiseAddress, DefaultNodeServerPort)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("node server: listen on %s: %w", listen, err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	remote, err := nodeplane.NewRemote(nodeplane.RemoteOptions{Servers: cfg.Servers, Node: name, TLS: clientTLS, Logger: log.With("component", "nodeplane")})
	if err != nil {
		return err
	}
	defer remote.Close()
	// Register before anything is set up: the subnet every node's bridge
	// has comes from the servers, so that it is configured once, there.
	addresses := []string{cfg.AdvertiseAddress}
	endpoint := "https://" + net.JoinHostPort(cfg.AdvertiseAddress, port)
	info, err := registerFirst(ctx, remote, nodeRecord(name, cfg.Node, addresses, endpoint), log)
	if err != nil {
		return err
	}
	n, closeNode, err := newNode(ctx, nodeParams{
		cfg: cfg.Node, dataDir: dataDir, subnet: info.PublicSubnet, plane: remote,
		addresses: addresses, endpoint: endpoint,
		log: log.With("component", "agent", "node", name),
	})
	if err != nil {
		return err
	}
	defer closeNode()

	// Only the API servers may use the node server: their client
	// certificate is the CA's, with the API servers' organisation.
	ns := nodeserver.New(n.agent.Service(), pki.IsAPIServer, log.With("component", "nodeserver"))
	srv := &http.Server{
		Handler:           ns,
		TLSConfig:         nodeserver.TLSConfig(cert, pool),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.agent.Run(gctx) })
	g.Go(func() error { return serveTLS(gctx, "node server", srv, ln, 3*time.Second, ns.Close, log) })
	log.Info("berth agent running", "node", name, "node_server", ln.Addr().String(), "servers", cfg.Servers)
	return g.Wait()
}

// registerFirst registers the node, retrying until a server answers.
func registerFirst(ctx context.Context, remote *nodeplane.Remote, n types.Node, log *slog.Logger) (types.ClusterInfo, error) {
	for {
		info, err := remote.Register(ctx, n)
		if err == nil {
			return info, nil
		}
		log.Warn("register with the servers; retrying", "error", err)
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// Node credentials in the agent's data dir.
const (
	nodeCertFile = "node.crt"
	nodeKeyFile  = "node.key"
)

// nodeCertificate is the node's client (and node server) certificate:
// the one kept in the data dir, or a new one the servers sign in
// exchange for the join token.
func nodeCertificate(ctx context.Context, cfg config.Agent, dataDir string, pool *x509.CertPool, log *slog.Logger) (tls.Certificate, error) {
	dir := filepath.Join(dataDir, "pki")
	certPath, keyPath := filepath.Join(dir, nodeCertFile), filepath.Join(dir, nodeKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err == nil {
			got, _ := pki.NodeName(leaf)
			if got == cfg.NodeName {
				return c, nil
			}
			return tls.Certificate{}, fmt.Errorf("the certificate in %s is for node %q, not %q: remove the data dir's pki directory and join again", dir, got, cfg.NodeName)
		}
	}
	if cfg.JoinToken == "" {
		return tls.Certificate{}, fmt.Errorf("node %s has not joined yet: --join-token is required (make one on a server with `berth node token create`)", cfg.NodeName)
	}
	ip := net.ParseIP(cfg.AdvertiseAddress)
	keyPEM, csr, err := pki.NewNodeKey(cfg.NodeName, []net.IP{ip})
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, err := requestJoin(ctx, cfg.Servers, pool, joinRequest{Token: cfg.JoinToken, Node: cfg.NodeName, CSR: base64.StdEncoding.EncodeToString(csr), Addresses: []string{cfg.AdvertiseAddress}})
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	if err := pki.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := pki.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("joined the cluster", "node", cfg.NodeName, "certificate", certPath)
	return tls.X509KeyPair(certPEM, keyPEM)
}

// joinRequest is the body of POST /berth/v1/join.
type joinRequest struct {
	Token     string   `json:"token"`
	Node      string   `json:"node"`
	CSR       string   `json:"csr"`
	Addresses []string `json:"addresses"`
}

// requestJoin trades the token for a certificate at the first server that
// answers. A refusal (a bad token) is final: it is not tried elsewhere.
func requestJoin(ctx context.Context, servers []string, pool *x509.CertPool, req joinRequest) ([]byte, error) {
	body, _ := json.Marshal(req)
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	var errs []error
	for _, s := range servers {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s, "/")+"/berth/v1/join", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var out struct {
			Certificate string `json:"certificate"`
			Error       *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && err == nil && out.Certificate != "":
			return []byte(out.Certificate), nil
		case out.Error != nil && resp.StatusCode < 500:
			return nil, fmt.Errorf("join refused by %s: %s: %s", s, out.Error.Code, out.Error.Message)
		default:
			errs = append(errs, fmt.Errorf("join at %s: HTTP %d", s, resp.StatusCode))
		}
	}
	return nil, fmt.Errorf("join: no server answered: %w", errors.Join(errs...))
}
