package testenv

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// RunNetnsDir is where `ip netns` and podman pin named network namespaces.
const RunNetnsDir = "/run/netns"

// KeepRunNetnsClean undoes, when t ends, what `ip netns add` and podman do
// the first time and never undo: make RunNetnsDir a mount point of its
// own. It unmounts it only if it was no mount point when called and is
// empty at the end. Call it before making the namespaces, so that its
// cleanup runs after theirs.
func KeepRunNetnsClean(t testing.TB) {
	t.Helper()
	if was, err := mountinfo.Mounted(RunNetnsDir); err == nil && was {
		return
	}
	t.Cleanup(func() {
		entries, err := os.ReadDir(RunNetnsDir)
		if err != nil || len(entries) > 0 {
			return
		}
		if mounted, err := mountinfo.Mounted(RunNetnsDir); err == nil && mounted {
			if err := unix.Unmount(RunNetnsDir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", RunNetnsDir, err)
			}
		}
	})
}

// NFTTable is the nftables table (family ip) of the server whose public
// bridge is bridge; it mirrors firewall.TableName, which testenv cannot
// import.
func NFTTable(bridge string) string { return "berth-" + bridge }

// NFTTableExists reports whether the ip table exists.
func NFTTableExists(table string) (bool, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return false, nil
	}
	out, err := exec.Command("nft", "list", "tables", "ip").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("nft list tables: %w: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "table ip "+table {
			return true, nil
		}
	}
	return false, nil
}

// SubnetNetworks returns the bridge and subnet of every virtual network
// subnet a server's agent has set up, from the conflists it keeps under
// DataDir/cni/nets while a subnet is in use.
func SubnetNetworks(dataDir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dataDir, "cni", "nets", "*.conflist"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var conf struct {
			Plugins []struct {
				Bridge string `json:"bridge"`
				IPAM   struct {
					Ranges [][]struct {
						Subnet string `json:"subnet"`
					} `json:"ranges"`
				} `json:"ipam"`
			} `json:"plugins"`
		}
		if err := json.Unmarshal(b, &conf); err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		for _, p := range conf.Plugins {
			if p.Bridge != "" && len(p.IPAM.Ranges) > 0 && len(p.IPAM.Ranges[0]) > 0 {
				out[p.Bridge] = p.IPAM.Ranges[0][0].Subnet
			}
		}
	}
	return out, nil
}

// removeServerNetworks removes what a stopped server may have left besides
// its public bridge: its nftables table, and the bridges and iptables
// rules of its virtual network subnets.
func removeServerNetworks(dataDir, bridge string) ([]string, error) {
	var removed []string
	var errs []error
	if ok, err := NFTTableExists(NFTTable(bridge)); err != nil {
		errs = append(errs, err)
	} else if ok {
		if out, err := exec.Command("nft", "delete", "table", "ip", NFTTable(bridge)).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table %s: %w: %s", NFTTable(bridge), err, out))
		} else {
			removed = append(removed, "nft table "+NFTTable(bridge))
		}
	}
	nets, err := SubnetNetworks(dataDir)
	if err != nil {
		errs = append(errs, err)
	}
	for br, subnet := range nets {
		if err := deleteLink(br); err != nil {
			errs = append(errs, err)
		}
		rules, err := removeSubnetRules(subnet)
		if err != nil {
			errs = append(errs, err)
		}
		removed = append(removed, rules...)
	}
	return removed, errors.Join(errs...)
}

// FreePrefix picks a random IPv4 prefix of the given length inside
// 10.128.0.0/10 (clear of the servers' 10.231-250 /24s) that no host
// interface uses, for a test's virtual networks and client namespaces.
func FreePrefix(bits int) (netip.Prefix, error) {
	if bits < 16 || bits > 30 {
		return netip.Prefix{}, fmt.Errorf("prefix length %d: want 16 to 30", bits)
	}
	for range 100 {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<(bits-10)))
		if err != nil {
			return netip.Prefix{}, err
		}
		v := uint32(10)<<24 | uint32(128)<<16 | uint32(n.Int64())<<(32-bits)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
		if inUse, err := PrefixInUse(p); err != nil {
			return netip.Prefix{}, err
		} else if !inUse {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free prefix after 100 attempts")
}
