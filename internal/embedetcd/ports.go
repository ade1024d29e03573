package embedetcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// portsFile remembers the URLs of the member: etcd stores its peer URL in
// the WAL and clients of a restarted berth dial the old client URL, so the
// ports picked on the first start must be picked again on every later one.
const portsFile = "ports.json"

type ports struct {
	ClientURL string `json:"clientURL"`
	PeerURL   string `json:"peerURL"`
	// Name is the member's name, fixed at its first start: etcd keeps it
	// with the member. Files from before several servers have none, and
	// their member is called DefaultName.
	Name string `json:"name,omitempty"`
}

// resolvePorts returns the member's name and URLs: the configured ones,
// else the remembered ones, else fresh free ports (on 127.0.0.1, or for a
// member of several on the peer host). It remembers the result.
func resolvePorts(dir string, cfg Config) (ports, error) {
	path := filepath.Join(dir, portsFile)
	var stored ports
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return ports{}, fmt.Errorf("embedetcd: read %s: %w", path, err)
	default:
		if err := json.Unmarshal(b, &stored); err != nil {
			return ports{}, fmt.Errorf("embedetcd: parse %s: %w: %w", path, errdefs.ErrDataLoss, err)
		}
	}

	want := ports{ClientURL: cfg.ClientURL, PeerURL: cfg.PeerURL, Name: stored.Name}
	switch {
	case want.Name != "":
	case stored.ClientURL != "":
		want.Name = DefaultName // a member from before names were kept
	case cfg.Name != "":
		want.Name = cfg.Name
	default:
		want.Name = DefaultName
	}
	if cfg.Name != "" && cfg.Name != want.Name {
		return ports{}, fmt.Errorf("embedetcd: the member in %s is called %q, not %q: a member keeps its first name: %w",
			dir, want.Name, cfg.Name, errdefs.ErrFailedPrecondition)
	}
	if want.ClientURL == "" {
		want.ClientURL = stored.ClientURL
	}
	if want.PeerURL == "" && cfg.Peer != nil && cfg.Peer.Port != 0 {
		want.PeerURL = cfg.Peer.url(cfg.Peer.Port)
	}
	if want.PeerURL == "" {
		want.PeerURL = stored.PeerURL
	}
	if cfg.Peer != nil && want.PeerURL != "" && !strings.HasPrefix(want.PeerURL, "https://"+hostPrefix(cfg.Peer.Host)) {
		if stored.PeerURL == want.PeerURL {
			// The other members know this member by its peer URL; moving it
			// is a member update the cluster must agree to first.
			return ports{}, fmt.Errorf("embedetcd: the member in %s is reached on %s, not on %s with TLS: "+
				"a single server's data dir cannot become a member of several, or move, in place: %w",
				dir, want.PeerURL, cfg.Peer.Host, errdefs.ErrFailedPrecondition)
		}
	}
	if want.ClientURL == "" || want.PeerURL == "" {
		free, err := freePorts(2, "127.0.0.1")
		if err != nil {
			return ports{}, err
		}
		if want.ClientURL == "" {
			want.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", free[0])
		}
		if want.PeerURL == "" && cfg.Peer == nil {
			want.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", free[1])
		}
	}
	if want.PeerURL == "" {
		free, err := freePorts(1, cfg.Peer.Host)
		if err != nil {
			return ports{}, err
		}
		want.PeerURL = cfg.Peer.url(free[0])
	}
	if want != stored {
		if err := writePorts(path, want); err != nil {
			return ports{}, err
		}
	}
	return want, nil
}

// hostPrefix is how host starts a URL's authority: IPv6 in brackets.
func hostPrefix(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:"
	}
	return host + ":"
}

// freePorts asks the kernel for n distinct free ports. All listeners stay
// open until every port is known, so the kernel cannot hand out one twice.
func freePorts(n int, host string) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("embedetcd: pick a free port: %w", err)
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// writePorts replaces the file atomically, so a crash never leaves a torn
// file that would stop the next start.
func writePorts(path string, p ports) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("embedetcd: encode ports: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), portsFile+".tmp*")
	if err != nil {
		return fmt.Errorf("embedetcd: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("embedetcd: write %s: %w", path, err)
	}
	return nil
}

// Resolve decides the member's name and peer URL as Start will, and
// remembers them, before the member exists: a joining server sends its
// peer URL with its join.
func Resolve(cfg Config) (name, peerURL string, err error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return "", "", fmt.Errorf("embedetcd: create data dir: %w", err)
	}
	p, err := resolvePorts(cfg.Dir, cfg)
	if err != nil {
		return "", "", err
	}
	return p.Name, p.PeerURL, nil
}

// HasMember reports whether dir holds a member's data: one that started
// at least once.
func HasMember(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member"))
	return err == nil
}

// HasPeers reports whether the member in dir was made to be one of
// several (its peer URL is TLS), so that a restart without the flags that
// made it so still starts it with its peer TLS.
func HasPeers(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, portsFile))
	if err != nil {
		return false
	}
	var p ports
	return json.Unmarshal(b, &p) == nil && strings.HasPrefix(p.PeerURL, "https://")
}
