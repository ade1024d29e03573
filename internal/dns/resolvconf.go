package dns

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
)

// resolvConfs are read in order: the host's resolver configuration, then
// systemd-resolved's list of real upstreams, for hosts whose resolv.conf
// names only the loopback stub.
var resolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// SystemUpstreams returns the host's non-loopback name servers as
// HOST:53, the default upstreams. Loopback ones are left out: they may be
// this server itself, and a forward to it would loop.
func SystemUpstreams() []string {
	for _, path := range resolvConfs {
		if ups := upstreamsIn(path); len(ups) > 0 {
			return ups
		}
	}
	return nil
}

func upstreamsIn(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// A link-local IPv6 server carries a zone ("fe80::1%eth0").
		a, err := netip.ParseAddr(fields[1])
		if err != nil || a.Unmap().IsLoopback() || a.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53).String())
	}
	return out
}
