package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-dev/berth/internal/apiserver"
	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/embedetcd"
	"github.com/berth-dev/berth/internal/leader"
	"github.com/berth-dev/berth/internal/pki"
)

// A server's store is one of three:
//   - a single embedded member on loopback (the default: one server);
//   - an embedded member of several servers, which reach each other's
//     peer port over mutual TLS from the cluster's CA (--cluster-init on
//     the first, --join on the others);
//   - an external etcd cluster (--etcd-endpoints).
// openStore starts or joins it and returns a client.

// joinStateFile keeps the answer of a join until the new member has been
// promoted: a server that crashes in between starts the same member
// again (its token is spent by then).
const joinStateFile = "join.json"

// electionPrefix is where the servers campaign to run the controllers.
const electionPrefix = "/berth/election/controllers"

// promoteTimeout bounds how long a joined member may take to catch up.
const promoteTimeout = 5 * time.Minute

// serverStore is what openStore made.
type serverStore struct {
	bundle *pki.Bundle
	cli    *clientv3.Client
	// etcdErr reports the embedded member's failure; nil for external.
	etcdErr <-chan error
	// clustered: other servers may join this one's cluster.
	clustered bool
	peerURL   string
	close     func()
}

// openStore prepares the PKI and the store of server name. host is the
// API's listen host.
func openStore(ctx context.Context, cfg config.Server, dataDir, name, host string, log *slog.Logger) (_ *serverStore, retErr error) {
	pkiDir, etcdDir := filepath.Join(dataDir, "pki"), filepath.Join(dataDir, "etcd")
	ss := &serverStore{close: func() {}}
	defer func() {
		if retErr != nil {
			ss.close()
		}
	}()
	external := len(cfg.EtcdEndpoints) > 0
	ss.clustered = !external && (cfg.ClusterInit || cfg.JoinURL != "" || embedetcd.HasPeers(etcdDir))

	etcdCfg := embedetcd.Config{Dir: etcdDir, Logger: log.With("component", "etcd")}
	var join *joinState
	if ss.clustered {
		peerHost, err := advertiseHost(cfg, host)
		if err != nil {
			return nil, err
		}
		etcdCfg.Name = name
		etcdCfg.Peer = &embedetcd.Peer{Host: peerHost, Port: cfg.EtcdPeerPort}
		if join, err = loadJoinState(dataDir); err != nil {
			return nil, err
		}
		if cfg.JoinURL != "" && join == nil && !embedetcd.HasMember(etcdDir) {
			if join, err = joinCluster(ctx, cfg, dataDir, etcdCfg, log); err != nil {
				return nil, err
			}
		}
		if join != nil {
			etcdCfg.InitialCluster = join.InitialCluster
		}
	}

	bundle, err := pki.Ensure(pkiDir, []string{host, cfg.AdvertiseAddress})
	if err != nil {
		return nil, err
	}
	ss.bundle = bundle
	if etcdCfg.Peer != nil {
		pc, err := bundle.EnsurePeer(pkiDir, etcdCfg.Peer.Host, embedetcd.PeerCN)
		if err != nil {
			return nil, err
		}
		etcdCfg.Peer.CertFile, etcdCfg.Peer.KeyFile, etcdCfg.Peer.CAFile = pc.CertFile, pc.KeyFile, pc.CAFile
	}

	endpoints := cfg.EtcdEndpoints
	if !external {
		if cfg.RestoreSnapshot != "" {
			// Refused when the data dir already has a member.
			if err := embedetcd.Restore(ctx, cfg.RestoreSnapshot, etcdCfg); err != nil {
				return nil, fmt.Errorf("restore snapshot: %w", err)
			}
		}
		e, err := embedetcd.Start(ctx, etcdCfg)
		if err != nil {
			return nil, fmt.Errorf("start embedded etcd: %w", err)
		}
		ss.close = e.Close
		endpoints, ss.etcdErr, ss.peerURL = e.Endpoints(), e.Err(), e.PeerURL()
		if join != nil {
			// A learner serves no client: it must vote before this server
			// can use its own member.
			if err := promote(ctx, cfg, name, bundle.Token, log); err != nil {
				return nil, err
			}
			if err := os.Remove(filepath.Join(dataDir, joinStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
	}
	cli, err := embedetcd.NewClient(ctx, endpoints)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd: %w", err)
	}
	closeEtcd := ss.close
	ss.cli, ss.close = cli, func() { cli.Close(); closeEtcd() }
	return ss, nil
}

// advertiseHost is where the other servers reach this one's peer port.
func advertiseHost(cfg config.Server, listenHost string) (string, error) {
	if cfg.AdvertiseAddress != "" {
		return cfg.AdvertiseAddress, nil
	}
	a, err := netip.ParseAddr(listenHost)
	if err != nil || a.IsUnspecified() || a.IsLoopback() {
		return "", fmt.Errorf("--advertise-address is required with --cluster-init or --join when --listen (%q) is not an address the other servers can reach", listenHost)
	}
	return listenHost, nil
}

// joinState is what a join answered that the start of the member needs.
type joinState struct {
	InitialCluster string `json:"initialCluster"`
}

func loadJoinState(dataDir string) (*joinState, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, joinStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var js joinState
	if err := json.Unmarshal(b, &js); err != nil || js.InitialCluster == "" {
		return nil, fmt.Errorf("%s is damaged (%v): remove the data dir's etcd and %s and join again with a new token: %w",
			joinStateFile, err, joinStateFile, errdefs.ErrDataLoss)
	}
	return &js, nil
}

// joinCluster asks a server of the cluster to add this one's member and
// takes the cluster's CA, key and admin token into the PKI dir.
func joinCluster(ctx context.Context, cfg config.Server, dataDir string, etcdCfg embedetcd.Config, log *slog.Logger) (*joinState, error) {
	name, peerURL, err := embedetcd.Resolve(etcdCfg)
	if err != nil {
		return nil, err
	}
	hc, err := joinHTTPClient(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	var resp apiserver.ServerJoinResponse
	req := apiserver.ServerJoinRequest{Token: cfg.JoinToken, Name: name, PeerURL: peerURL}
	if err := callServer(ctx, hc, http.MethodPost, cfg.JoinURL+"/berth/v1/cluster/join", "", req, &resp); err != nil {
		return nil, fmt.Errorf("join the cluster at %s: %w", cfg.JoinURL, err)
	}
	if err := pki.Seed(filepath.Join(dataDir, "pki"), []byte(resp.CA), []byte(resp.CAKey), resp.AdminToken); err != nil {
		return nil, err
	}
	js := &joinState{InitialCluster: resp.InitialCluster}
	b, _ := json.Marshal(js)
	if err := pki.WriteFileAtomic(filepath.Join(dataDir, joinStateFile), b, 0o600); err != nil {
		return nil, err
	}
	log.Info("joined the cluster; starting this server's etcd member", "server", name, "peer_url", peerURL, "initial_cluster", resp.InitialCluster)
	return js, nil
}

// promote asks the server joined through to make this member a voter,
// retrying while it catches up.
func promote(ctx context.Context, cfg config.Server, name, adminToken string, log *slog.Logger) error {
	if cfg.JoinURL == "" {
		return fmt.Errorf("this server's member was added by a join that has not finished: start it with the same --join, --ca-file and --join-token")
	}
	hc, err := joinHTTPClient(cfg.CAFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, promoteTimeout)
	defer cancel()
	for {
		err := callServer(ctx, hc, http.MethodPost, cfg.JoinURL+"/berth/v1/cluster/members/"+name+"/promote", adminToken, nil, nil)
		if err == nil {
			log.Info("this server's etcd member votes now", "server", name)
			return nil
		}
		var se *serverError
		if !errors.As(err, &se) || se.status != http.StatusServiceUnavailable {
			return fmt.Errorf("promote this server's etcd member: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote this server's etcd member: %w (last: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func joinHTTPClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

// serverError is an ARM error answer of another server.
type serverError struct {
	status        int
	code, message string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message)
}

// callServer sends body as JSON and decodes a 2xx answer into out.
func callServer(ctx context.Context, hc *http.Client, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &serverError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// clusterOps is the cluster as the API sees it: etcd's members and the
// controllers' election.
type clusterOps struct {
	members *embedetcd.Members
	cli     *clientv3.Client
}

func (c clusterOps) Members(ctx context.Context) ([]apiserver.ClusterMember, error) {
	list, err := c.members.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]apiserver.ClusterMember, 0, len(list))
	for _, m := range list {
		out = append(out, apiserver.ClusterMember{Name: m.Name, ID: strconv.FormatUint(m.ID, 16), PeerURLs: m.PeerURLs, Learner: m.Learner, RaftLeader: m.Leader})
	}
	return out, nil
}

func (c clusterOps) AddLearner(ctx context.Context, name, peerURL string) (string, error) {
	return c.members.AddLearner(ctx, name, peerURL)
}

func (c clusterOps) Promote(ctx context.Context, name string) error {
	return c.members.Promote(ctx, name)
}

func (c clusterOps) Remove(ctx context.Context, name string) error {
	return c.members.Remove(ctx, name)
}

func (c clusterOps) Leader(ctx context.Context) (string, time.Time, error) {
	l, err := leader.Current(ctx, c.cli, electionPrefix)
	return l.Leader, l.ElectedAt, err
}

// serverName is this server's name among the servers.
func serverName(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	n, err := nodeName("")
	if err != nil {
		return "", fmt.Errorf("--server-name is empty and the host name is unknown: %w", err)
	}
	return n, nil
}
