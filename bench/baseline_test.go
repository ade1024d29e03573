package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/testenv"
)

// ctrNamespace is where the ctr baseline runs, next to Berth's "berth".
const ctrNamespace = "bench"

// ctrBaseline runs workloads with containerd's own CLI against the same
// private containerd as Berth: the floor for the same runtime. It uses the
// host network (ctr has no network set-up of its own worth comparing), so
// each workload gets its own port through the hello image's PORT.
type ctrBaseline struct {
	address string
	cl      *client.Client
}

func (c *ctrBaseline) ctr(ctx context.Context, args ...string) error {
	full := append([]string{"--address", c.address, "--namespace", ctrNamespace}, args...)
	out, err := exec.CommandContext(ctx, "ctr", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (c *ctrBaseline) pull(ctx context.Context, ref string) error {
	return c.ctr(ctx, "images", "pull", "--plain-http", ref)
}

// runHello starts the hello image as id listening on port.
func (c *ctrBaseline) runHello(ctx context.Context, id, ref string, port int) error {
	return c.ctr(ctx, "run", "-d", "--net-host", "--env", fmt.Sprintf("PORT=%d", port), ref, id)
}

// runPair starts hello on port and busybox's httpd on webPort, both with
// dir mounted at /data: the two-container group without a group.
func (c *ctrBaseline) runPair(ctx context.Context, id, hello, busybox, dir string, port, webPort int) error {
	mount := fmt.Sprintf("type=bind,src=%s,dst=/data,options=rbind:rw", dir)
	if err := c.ctr(ctx, "run", "-d", "--net-host", "--mount", mount, "--env", fmt.Sprintf("PORT=%d", port), hello, id+"-hello"); err != nil {
		return err
	}
	script := strings.Replace(pairWebScript, "8080", fmt.Sprint(webPort), 1)
	return c.ctr(ctx, "run", "-d", "--net-host", "--mount", mount, busybox, id+"-web", "/bin/sh", "-c", script)
}

// remove kills and deletes the container id with its snapshot; a missing
// one is not an error.
func (c *ctrBaseline) remove(ctx context.Context, id string) error {
	ctx = namespaces.WithNamespace(ctx, ctrNamespace)
	ctr, err := c.cl.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		exit, err := task.Wait(ctx)
		if err != nil {
			return fmt.Errorf("wait for task %s: %w", id, err)
		}
		if st, err := task.Status(ctx); err == nil && st.Status == client.Running {
			if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("kill %s: %w", id, err)
			}
			select {
			case <-exit:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// taskPids returns the pid of every running task in namespace ns.
func taskPids(ctx context.Context, cl *client.Client, ns string) ([]uint32, error) {
	ctx = namespaces.WithNamespace(ctx, ns)
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		return nil, err
	}
	var pids []uint32
	for _, c := range ctrs {
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := task.Status(ctx)
		if err == nil && st.Status == client.Running {
			pids = append(pids, task.Pid())
		}
	}
	return pids, nil
}

// purgeImage deletes every image whose name contains substr in every
// namespace, synchronously, so that containerd's garbage collector removes
// its content and snapshots: the next pull is cold.
func purgeImage(ctx context.Context, cl *client.Client, substr string) error {
	nss, err := cl.NamespaceService().List(ctx)
	if err != nil {
		return err
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		imgs, err := cl.ImageService().List(nctx)
		if err != nil {
			return fmt.Errorf("list images in %s: %w", ns, err)
		}
		for _, img := range imgs {
			if !strings.Contains(img.Name, substr) {
				continue
			}
			if err := cl.ImageService().Delete(nctx, img.Name, images.SynchronousDelete()); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("delete image %s in %s: %w", img.Name, ns, err)
			}
		}
	}
	return nil
}

// podmanBaseline runs podman as root with all of its state in a private
// directory: no systemd here, so cgroupfs and a file event log; its own
// CNI network, bridge and subnet so that it never meets Berth's.
type podmanBaseline struct {
	dir     string
	bridge  string
	subnet  netip.Prefix
	network string
	conf    string // containers.conf
	nextIP  int
}

const podmanNetwork = "berthbench"

func startPodman(t *testing.T) *podmanBaseline {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "bpod-")
	if err != nil {
		t.Fatal(err)
	}
	subnet, err := pickSubnet(24)
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanBaseline{dir: dir, subnet: subnet, network: podmanNetwork, bridge: "bp" + randomHex(t, 3), nextIP: 10}
	// podman pins its containers' namespaces under /run/netns.
	testenv.KeepRunNetnsClean(t)
	t.Cleanup(func() { p.cleanup(t) })
	// As root, podman gives containers RLIMIT_NOFILE 1048576 and
	// RLIMIT_NPROC 4194304 unless told otherwise, and runc may not set
	// them without CAP_SYS_RESOURCE (missing inside a container, as on the
	// machine of the first runs). nofile is containerd's default, so that
	// every system runs the workload with the same limit.
	p.conf = filepath.Join(dir, "containers.conf")
	conf := "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=32768:32768\"]\n"
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gw := subnet.Addr().Next()
	if _, err := p.podman(ctx, "network", "create", "--subnet", subnet.String(), "--gateway", gw.String(), p.network); err != nil {
		t.Fatalf("create podman network: %v", err)
	}
	// podman 4.3 has no --interface-name and numbers its bridges
	// cni-podmanN from the networks it sees, which are only ours: give the
	// bridge a unique name in the CNI config it wrote.
	netConf := filepath.Join(dir, "net", p.network+".conflist")
	b, err := os.ReadFile(netConf)
	if err != nil {
		t.Fatalf("read podman network config: %v", err)
	}
	renamed := bridgeField.ReplaceAll(b, []byte(`"bridge": "`+p.bridge+`"`))
	if bytes.Equal(renamed, b) {
		t.Fatalf("no bridge name in %s:\n%s", netConf, b)
	}
	if err := os.WriteFile(netConf, renamed, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var bridgeField = regexp.MustCompile(`"bridge":\s*"[^"]*"`)

func (p *podmanBaseline) podman(ctx context.Context, args ...string) (string, error) {
	full := append([]string{
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--network-config-dir", filepath.Join(p.dir, "net"),
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--storage-driver", "overlay",
	}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	// registries.conf still comes from /etc: the harness passes full
	// references and --tls-verify=false, so its content does not matter.
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ip returns the next free address of the podman network; runs are
// sequential and each is removed before the address comes round again.
func (p *podmanBaseline) ip() netip.Addr {
	if p.nextIP > 250 {
		p.nextIP = 10
	}
	a := p.subnet.Addr().As4()
	a[3] = byte(p.nextIP)
	p.nextIP++
	return netip.AddrFrom4(a)
}

func (p *podmanBaseline) pull(ctx context.Context, ref string) error {
	_, err := p.podman(ctx, "pull", "-q", "--tls-verify=false", ref)
	return err
}

func (p *podmanBaseline) runHello(ctx context.Context, name, ref string, ip netip.Addr) error {
	_, err := p.podman(ctx, "run", "-d", "-q", "--tls-verify=false", "--network", p.network, "--ip", ip.String(), "--name", name, ref)
	return err
}

// runPair creates a pod on ip, then runs hello and busybox's httpd in it
// with a shared named volume: what a podman user does for a group.
func (p *podmanBaseline) runPair(ctx context.Context, name, hello, busybox string, ip netip.Addr) error {
	if _, err := p.podman(ctx, "pod", "create", "--name", name, "--network", p.network, "--ip", ip.String()); err != nil {
		return err
	}
	vol := name + "-data:/data"
	if _, err := p.podman(ctx, "run", "-d", "-q", "--tls-verify=false", "--pod", name, "--name", name+"-hello", "-v", vol, hello); err != nil {
		return err
	}
	_, err := p.podman(ctx, "run", "-d", "-q", "--tls-verify=false", "--pod", name, "--name", name+"-web", "-v", vol, busybox, "/bin/sh", "-c", pairWebScript)
	return err
}

func (p *podmanBaseline) remove(ctx context.Context, name string) error {
	_, err := p.podman(ctx, "rm", "-f", "-t", "0", name)
	return err
}

func (p *podmanBaseline) removePod(ctx context.Context, name string) error {
	if _, err := p.podman(ctx, "pod", "rm", "-f", "-t", "0", name); err != nil {
		return err
	}
	_, err := p.podman(ctx, "volume", "rm", "-f", name+"-data")
	return err
}

func (p *podmanBaseline) rmi(ctx context.Context, ref string) error {
	_, err := p.podman(ctx, "rmi", "-f", ref)
	return err
}

// cleanup removes every container, pod, volume and the network, then the
// private state (podman leaves overlay mounts below it).
func (p *podmanBaseline) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"pod", "rm", "-a", "-f", "-t", "0"},
		{"rm", "-a", "-f", "-t", "0"},
		{"volume", "rm", "-a", "-f"},
		{"network", "rm", "-f", p.network},
		{"system", "reset", "-f"},
	} {
		if _, err := p.podman(ctx, args...); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	if _, err := net.InterfaceByName(p.bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", "dev", p.bridge).CombinedOutput(); err != nil {
			t.Errorf("delete bridge %s: %v: %s", p.bridge, err, out)
		}
	}
	if err := testenv.UnmountUnder(p.dir); err != nil {
		t.Errorf("unmount under %s: %v", p.dir, err)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		t.Errorf("remove %s: %v", p.dir, err)
	}
}

// pickSubnet returns a random IPv4 prefix of the given size in
// 10.200.0.0/13 that no host interface overlaps. testenv gives servers
// /24s in 10.231-10.250, so the two never meet.
func pickSubnet(bits int) (netip.Prefix, error) {
	for attempt := 0; attempt < 100; attempt++ {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<11)) // 8 × 256 third-octet values
		if err != nil {
			return netip.Prefix{}, err
		}
		v := n.Int64()
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + v/256), byte(v % 256), 0}), bits).Masked()
		inUse, err := testenv.PrefixInUse(p)
		if err != nil {
			return netip.Prefix{}, err
		}
		if !inUse {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free subnet after 100 attempts")
}
