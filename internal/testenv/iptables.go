package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// globalCNIChains are shared by every CNI network on the host (portmap and
// firewall plugins); only individual rules in them may be ours.
var globalCNIChains = map[string]bool{
	"CNI-HOSTPORT-DNAT":    true,
	"CNI-HOSTPORT-MASQ":    true,
	"CNI-HOSTPORT-SETMARK": true,
	"CNI-FORWARD":          true,
	"CNI-ADMIN":            true,
}

// removeSubnetRules removes the iptables leftovers of a network whose subnet
// is unique to one test: in the nat and filter tables, every per-container
// CNI chain (CNI-<hash>, CNI-DN-<hash>) holding a rule that names an
// address inside subnet, every rule that jumps to such a chain, and every
// other rule that names an address inside subnet. Because each test server
// draws a random /24 no other test uses, a rule naming it is certainly that
// test's. It returns the rules and chains it removed.
func removeSubnetRules(subnet string) ([]string, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, fmt.Errorf("parse subnet %q: %w", subnet, err)
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		return nil, nil // no iptables, so nothing can have been added
	}
	var removed []string
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return removed, fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		script, what := subnetCleanupScript(table, out, p)
		if script == "" {
			continue
		}
		cmd := exec.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(script)
		if b, err := cmd.CombinedOutput(); err != nil {
			return removed, fmt.Errorf("iptables-restore for table %s: %w: %s\nscript:\n%s", table, err, bytes.TrimSpace(b), script)
		}
		removed = append(removed, what...)
	}
	return removed, nil
}

// subnetCleanupScript turns iptables-save output of one table into an
// iptables-restore --noflush script that removes what removeSubnetRules
// describes, or "" when nothing is ours.
func subnetCleanupScript(table string, save []byte, subnet netip.Prefix) (string, []string) {
	type rule struct{ chain, line string }
	var rules []rule
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		rules = append(rules, rule{chain: fields[1], line: line})
	}

	owned := map[string]bool{}
	var ownedOrder []string
	for _, r := range rules {
		if strings.HasPrefix(r.chain, "CNI-") && !globalCNIChains[r.chain] && !owned[r.chain] && namesSubnet(r.line, subnet) {
			owned[r.chain] = true
			ownedOrder = append(ownedOrder, r.chain)
		}
	}

	var script []string
	var what []string
	for _, r := range rules {
		if owned[r.chain] {
			continue // flushed below
		}
		if namesSubnet(r.line, subnet) || owned[jumpTarget(r.line)] {
			script = append(script, "-D"+strings.TrimPrefix(r.line, "-A"))
			what = append(what, table+": "+r.line)
		}
	}
	for _, c := range ownedOrder {
		script = append(script, "-F "+c)
	}
	for _, c := range ownedOrder {
		script = append(script, "-X "+c)
		what = append(what, table+": chain "+c)
	}
	if len(script) == 0 {
		return "", nil
	}
	return "*" + table + "\n" + strings.Join(script, "\n") + "\nCOMMIT\n", what
}

// jumpTarget returns the chain a rule jumps or goes to, if any.
func jumpTarget(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

// namesSubnet reports whether a rule names an address, or a prefix no wider
// than subnet, inside subnet: "10.1.2.3/32", "10.1.2.0/24",
// "--to-destination 10.1.2.3:80", "10.1.2.3-10.1.2.9".
func namesSubnet(line string, subnet netip.Prefix) bool {
	for _, tok := range strings.Fields(line) {
		tok = strings.Trim(tok, `"`)
		if tok == "" || tok[0] < '0' || tok[0] > '9' {
			continue
		}
		if pfx, err := netip.ParsePrefix(tok); err == nil {
			if pfx.Bits() >= subnet.Bits() && subnet.Contains(pfx.Addr()) {
				return true
			}
			continue
		}
		for _, part := range strings.FieldsFunc(tok, func(r rune) bool { return r == ':' || r == '-' }) {
			if a, err := netip.ParseAddr(part); err == nil && subnet.Contains(a) {
				return true
			}
		}
	}
	return false
}

// RulesNamingHosts returns the nat and filter rules that name a single
// address inside subnet (an "/32", a bare address or "address:port"): the
// per-group rules CNI adds on attach and must remove on detach. Rules that
// name the subnet as a whole are not included, so a server's static
// per-subnet rules do not count.
func RulesNamingHosts(subnet string) ([]string, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return nil, fmt.Errorf("parse subnet %q: %w", subnet, err)
	}
	host := func(line string) bool {
		for _, tok := range strings.Fields(line) {
			tok = strings.Trim(tok, `"`)
			if pfx, err := netip.ParsePrefix(tok); err == nil {
				if pfx.IsSingleIP() && p.Contains(pfx.Addr()) {
					return true
				}
				continue
			}
			if namesSubnet(tok, p) {
				return true
			}
		}
		return false
	}
	var out []string
	for _, table := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return out, fmt.Errorf("iptables-save -t %s: %w", table, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "-A ") && host(line) {
				out = append(out, table+": "+line)
			}
		}
	}
	return out, nil
}
