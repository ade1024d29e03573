package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/agent/network"
	"github.com/berth-dev/berth/internal/types"
)

func (a *Agent) groupDir(uid string) string { return filepath.Join(a.opts.Dir, "groups", uid) }

func (a *Agent) logDir(uid string) string { return filepath.Join(a.opts.Dir, "logs", uid) }

// LogPath is where a container's output goes.
func (a *Agent) LogPath(uid, container string) string {
	return filepath.Join(a.logDir(uid), container+".log")
}

// writeGroupFiles writes the /etc/hosts and /etc/resolv.conf the group's
// containers share; containerd outside CRI writes neither.
func (a *Agent) writeGroupFiles(g *types.ContainerGroup, att network.Attachment) error {
	dir := a.groupDir(g.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", att.IP, g.Name)
	if err := os.WriteFile(dir+"/hosts", []byte(hosts), 0o644); err != nil {
		return err
	}
	resolv := resolvConf(g.Spec.DNSConfig)
	if resolv == nil {
		host, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("read the host's resolv.conf: %w", err)
		}
		resolv = withoutLoopbackServers(host)
	}
	return os.WriteFile(dir+"/resolv.conf", resolv, 0o644)
}

// resolvConf renders the group's dnsConfig (nil when it has none): its
// name servers in order, its space-separated search domains and options
// each on one line, as ACI writes them.
func resolvConf(dns *types.DNSConfig) []byte {
	if dns == nil {
		return nil
	}
	var out bytes.Buffer
	for _, ns := range dns.NameServers {
		out.WriteString("nameserver " + ns + "\n")
	}
	if f := strings.Fields(dns.SearchDomains); len(f) > 0 {
		out.WriteString("search " + strings.Join(f, " ") + "\n")
	}
	if f := strings.Fields(dns.Options); len(f) > 0 {
		out.WriteString("options " + strings.Join(f, " ") + "\n")
	}
	return out.Bytes()
}

// withoutLoopbackServers is the host's resolver configuration b without
// loopback name servers, which would point into the group's own namespace.
func withoutLoopbackServers(b []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
			continue
		}
		out.WriteString(sc.Text() + "\n")
	}
	return out.Bytes()
}

// maxLogBytes is the most a logs request returns, as ACI's 4 MB.
const maxLogBytes = 4 << 20

// ReadLog returns a container's output: the last tail lines, or all of it
// (up to 4 MB) when tail is 0.
func (a *Agent) ReadLog(_ context.Context, g *types.ContainerGroup, container string, tail int) (string, error) {
	f, err := os.Open(a.LogPath(g.UID, container))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if off := fi.Size() - maxLogBytes; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return "", err
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	return tailLines(string(b), tail), nil
}

// tailLines returns the last n lines of s (all of s when n is 0).
func tailLines(s string, n int) string {
	if n <= 0 {
		return s
	}
	end := len(s)
	if strings.HasSuffix(s, "\n") {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n--
			if n == 0 {
				return s[i+1:]
			}
		}
	}
	return s
}
