// Package embedetcd runs an etcd member inside Berth's data directory, so
// that `berth server` needs no external database: alone by default, or one
// of the members of several servers (peer TLS from the Berth CA). It also
// builds clients for it or for an external etcd, and manages the members.
package embedetcd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	// DefaultName names a member whose server was given no name, as every
	// member was before several servers: the name is part of the member's
	// identity stored in the WAL, so it never changes.
	DefaultName = "berth"
	// PeerCN is the common name of a member's peer certificate; members
	// accept no other, so that a node's certificate, signed by the same
	// CA, cannot pose as a member. Node names cannot contain ':'.
	PeerCN = "berth:etcd-peer"
	// startTimeout bounds how long Start waits for the member to serve.
	// Replaying a large WAL takes a while, so it is generous.
	startTimeout = 60 * time.Second
	// compactionRetention is how much history etcd keeps. Watchers that fall
	// further behind get a compaction and relist (store.EventReset); without
	// compaction the database would grow forever.
	compactionRetention = "10m"
)

// Config says where the member keeps its data and where it listens.
type Config struct {
	// Dir holds the etcd data (Dir/member) and Dir/ports.json.
	Dir string
	// ClientURL and PeerURL, when empty, are free ports on 127.0.0.1 picked
	// on the first start and remembered in Dir/ports.json.
	ClientURL string
	PeerURL   string
	// Logger receives etcd's warnings and errors; nil means slog.Default()
	// with component=etcd.
	Logger *slog.Logger
	// Name is the member's name (default DefaultName); a member keeps the
	// name of its first start.
	Name string
	// Peer, when set, makes the member one of several: the others reach
	// it on Peer.Host over mutual TLS.
	Peer *Peer
	// InitialCluster, for a member joining a cluster on its first start,
	// names every member with its peer URL, this one included
	// ("a=https://10.0.0.1:2380,b=https://10.0.0.2:2380"); empty starts a
	// new cluster of this member. Later starts ignore it: the WAL knows.
	InitialCluster string
}

// Peer is how the members of several servers reach each other.
type Peer struct {
	// Host is the address the other members dial; the member listens on it.
	Host string
	// Port is the peer port; 0 picks a free one on the first start.
	Port int
	// CertFile and KeyFile are the member's certificate (server and client
	// auth, CN PeerCN, naming Host); CAFile the CA every member's is from.
	CertFile, KeyFile, CAFile string
}

func (p *Peer) url(port int) string {
	return "https://" + net.JoinHostPort(p.Host, strconv.Itoa(port))
}

// Etcd is a running embedded member.
type Etcd struct {
	e         *embed.Etcd
	endpoints []string
	// closeOnce guards embed.Etcd.Close, which panics on a second call.
	closeOnce sync.Once
	// closing silences etcd while it stops: it reports every listener it
	// closes as a failed server.
	closing *atomic.Bool
	name    string
	peerURL string
}

// Name is the member's name.
func (e *Etcd) Name() string { return e.name }

// PeerURL is where the other members reach this one.
func (e *Etcd) PeerURL() string { return e.peerURL }

// expectedWarnings are etcd warnings about choices Berth makes on purpose,
// and the one a process gets from starting a second member (tests do).
var expectedWarnings = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
	"etcdserver: failed to register grpc metrics":                                          true,
}

// Start starts the member and returns once it serves clients. A restart on
// the same Dir finds the same data and the same ports.
func Start(ctx context.Context, cfg Config) (*Etcd, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("embedetcd: data dir is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedetcd: create data dir: %w", err)
	}
	// The directory is etcd's alone, and etcd wants nobody else to read it.
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedetcd: data dir permissions: %w", err)
	}
	p, err := resolvePorts(cfg.Dir, cfg)
	if err != nil {
		return nil, err
	}
	clientURL, err := url.Parse(p.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client url %q: %w: %w", p.ClientURL, errdefs.ErrInvalidArgument, err)
	}
	peerURL, err := url.Parse(p.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: peer url %q: %w: %w", p.PeerURL, errdefs.ErrInvalidArgument, err)
	}

	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default().With("component", "etcd")
	}
	ec := embed.NewConfig()
	ec.Name = p.Name
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(p.Name)
	ec.InitialClusterToken = "berth"
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if cfg.Peer != nil {
		ec.PeerTLSInfo = transport.TLSInfo{
			CertFile: cfg.Peer.CertFile, KeyFile: cfg.Peer.KeyFile,
			ClientCertFile: cfg.Peer.CertFile, ClientKeyFile: cfg.Peer.KeyFile,
			TrustedCAFile: cfg.Peer.CAFile, ClientCertAuth: true,
			AllowedCNs: []string{PeerCN},
		}
		// Peers verify each other's names against the CA; the listener
		// itself needs no hostname of its own.
		ec.PeerAutoTLS = false
	}
	// Berth talks gRPC only; the HTTP gateway would be one more open door.
	ec.EnableGRPCGateway = false
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = compactionRetention
	// NewConfig leaves this 0, which makes etcd warn about every request.
	ec.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// etcd logs a lot at info; only warnings and worse reach Berth's log.
	ec.LogLevel = "warn"
	closing := new(atomic.Bool)
	demote := func(msg string) bool { return closing.Load() || expectedWarnings[msg] }
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(lg, zapcore.WarnLevel, demote)))

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("embedetcd: start in %s: %w", cfg.Dir, err)
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start in %s: %w", cfg.Dir, err)
	}

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedetcd: start in %s: %w", cfg.Dir, err)
	case <-ctx.Done():
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedetcd: start in %s: %w", cfg.Dir, ctx.Err())
	case <-timer.C:
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedetcd: start in %s: not ready after %s: %w", cfg.Dir, startTimeout, errdefs.ErrUnavailable)
	}
	return &Etcd{e: e, endpoints: []string{clientURL.String()}, closing: closing, name: p.Name, peerURL: p.PeerURL}, nil
}

// Endpoints are the client URLs to hand to NewClient.
func (e *Etcd) Endpoints() []string {
	return append([]string(nil), e.endpoints...)
}

// Err reports a fatal server error. It is closed by Close, so a receive
// after Close yields nil.
func (e *Etcd) Err() <-chan error {
	return e.e.Err()
}

// Close stops the member and waits until it has let go of its ports and
// files. It is safe to call more than once. Cancel watches and close
// clients first: etcd waits for open watch streams to end, up to its
// request timeout (7 s), before it cuts them.
func (e *Etcd) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.e.Close()
	})
}
