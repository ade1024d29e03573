package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// runsc with network=sandbox moves the addresses of the namespace's
// interfaces into its own network stack: it deletes them on the host side,
// and the kernel drops the routes that went with them. CNI's DEL then
// cannot see the group's address (the bridge plugin reads it from eth0 to
// remove its masquerade rule), and a second sandbox would find no network.
// So a sandbox records the addresses and routes it was given (in labels)
// and deleteSandbox puts them back once the sandbox is gone, leaving the
// namespace as CNI made it.

// Labels of a sandbox container: its network namespace, the addresses that
// were there before runsc took them ("eth0 10.88.0.2/16" per line) and the
// routes that were not the kernel's own (`ip route` lines).
const (
	labelSandboxNetNS  = "io.berth.sandbox-netns"
	labelSandboxAddrs  = "io.berth.sandbox-addrs"
	labelSandboxRoutes = "io.berth.sandbox-routes"
)

// netnsRoutes lists the IPv4 routes of the main table in the namespace at
// path that the kernel does not make by itself from an address.
func netnsRoutes(ctx context.Context, path string) (string, error) {
	out, err := inNetNS(ctx, path, "ip", "-4", "route", "show")
	if err != nil {
		return "", err
	}
	return parseRoutes(out), nil
}

func parseRoutes(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Contains(l, "proto kernel") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// netnsAddrs lists the global addresses in the network namespace at path,
// one "IFNAME CIDR" per line.
func netnsAddrs(ctx context.Context, path string) (string, error) {
	out, err := inNetNS(ctx, path, "ip", "-o", "addr", "show", "scope", "global")
	if err != nil {
		return "", err
	}
	return parseAddrs(out), nil
}

// parseAddrs turns `ip -o addr show` output into "IFNAME CIDR" lines.
func parseAddrs(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		// 2: eth0    inet 10.88.0.2/16 brd 10.88.255.255 scope global eth0\ ...
		f := strings.Fields(l)
		if len(f) < 4 || (f[2] != "inet" && f[2] != "inet6") {
			continue
		}
		ifname, _, _ := strings.Cut(f[1], "@")
		lines = append(lines, ifname+" "+f[3])
	}
	return strings.Join(lines, "\n")
}

// restoreAddrs adds the addresses that netnsAddrs listed back to the
// namespace at path; ones that are there already are fine, and a
// namespace that is gone has nothing to restore.
func restoreAddrs(ctx context.Context, path, addrs, routes string) error {
	if addrs == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	for _, l := range strings.Split(addrs, "\n") {
		ifname, cidr, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		if _, err := inNetNS(ctx, path, "ip", "addr", "add", cidr, "dev", ifname); err != nil && !strings.Contains(err.Error(), "File exists") {
			return err
		}
	}
	for _, l := range strings.Split(routes, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			if _, err := inNetNS(ctx, path, append([]string{"ip", "-4", "route", "replace"}, f...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// inNetNS runs a command in the network namespace at path.
func inNetNS(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), path, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
