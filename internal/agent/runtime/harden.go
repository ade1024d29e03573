package runtime

import (
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// DefaultPidsLimit bounds the processes of one container unless the node
// says otherwise: enough for any service, too few for a fork bomb to starve
// the node.
const DefaultPidsLimit = 4096

// defaultCapabilities is Docker's default set: what a service needs to
// drop privileges, bind low ports and manage its files, and nothing that
// reaches the kernel or the host (no SYS_ADMIN, SYS_MODULE, NET_ADMIN,
// SYS_PTRACE, SYS_TIME…).
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// maskedPaths hide kernel interfaces that leak host information or allow
// attacks on the host; readonlyPaths may be read but never written.
var (
	maskedPaths = []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// hardening returns what every runc container gets on top of its image
// config, whatever containerd's defaults are: Docker's capabilities,
// no-new-privileges, masked and read-only kernel paths, a process limit and
// the default seccomp profile. It must come after every option that
// changes capabilities, since the seccomp profile follows them.
func hardening(pidsLimit int64) []oci.SpecOpts {
	if pidsLimit <= 0 {
		pidsLimit = DefaultPidsLimit
	}
	return []oci.SpecOpts{
		oci.WithCapabilities(defaultCapabilities),
		oci.WithAmbientCapabilities(nil),
		oci.WithNoNewPrivileges,
		oci.WithMaskedPaths(maskedPaths),
		oci.WithReadonlyPaths(readonlyPaths),
		oci.WithPidsLimit(pidsLimit),
		seccomp.WithDefaultProfile(),
	}
}
