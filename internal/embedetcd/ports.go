package embedetcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// portsFile remembers the URLs of the member: etcd stores its peer URL in
// the WAL and clients of a restarted berth dial the old client URL, so the
// ports picked on the first start must be picked again on every later one.
const portsFile = "ports.json"

type ports struct {
	ClientURL string `json:"clientURL"`
	PeerURL   string `json:"peerURL"`
}

// resolvePorts returns the URLs to listen on: the configured ones, else the
// remembered ones, else fresh free ports on 127.0.0.1. It remembers the result.
func resolvePorts(dir, clientURL, peerURL string) (ports, error) {
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

	want := ports{ClientURL: clientURL, PeerURL: peerURL}
	if want.ClientURL == "" {
		want.ClientURL = stored.ClientURL
	}
	if want.PeerURL == "" {
		want.PeerURL = stored.PeerURL
	}
	if want.ClientURL == "" || want.PeerURL == "" {
		free, err := freePorts(2)
		if err != nil {
			return ports{}, err
		}
		if want.ClientURL == "" {
			want.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", free[0])
		}
		if want.PeerURL == "" {
			want.PeerURL = fmt.Sprintf("http://127.0.0.1:%d", free[1])
		}
	}
	if want != stored {
		if err := writePorts(path, want); err != nil {
			return ports{}, err
		}
	}
	return want, nil
}

// freePorts asks the kernel for n distinct free ports. All listeners stay
// open until every port is known, so the kernel cannot hand out one twice.
func freePorts(n int) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
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
