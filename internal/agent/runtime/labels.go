package runtime

// Namespace is the containerd namespace that holds Berth's images,
// containers and snapshots, apart from anything else on the node.
const Namespace = "berth"

// Container labels. They are the agent's only record of what it runs:
// after a restart it finds its containers, and their groups, through them.
const (
	// LabelGroup is the group's store key, "subscription/resourcegroup/name".
	LabelGroup = "io.berth.group"
	// LabelGroupUID is the UID of the group incarnation the container
	// belongs to.
	LabelGroupUID = "io.berth.group-uid"
	// LabelContainer is the container's name within its group.
	LabelContainer = "io.berth.container"
	// LabelGeneration is the group generation the container was made for.
	LabelGeneration = "io.berth.generation"
	// LabelRun is the run the container was made for: generation and
	// restart count of its group ("3.1"); a group restart or update makes
	// every container of an older run stale.
	LabelRun = "io.berth.run"
	// LabelStartedAt is when Start started the task, in RFC 3339 with
	// nanoseconds; containerd itself does not record it.
	LabelStartedAt = "io.berth.started-at"
)

// AnnotationShimGroup is the OCI annotation by which the runc-v2 shim
// serves every container with the same value from one shim process.
const AnnotationShimGroup = "io.containerd.runc.v2.group"

// runcRuntime is the containerd runtime (shim) used for every container.
const runcRuntime = "io.containerd.runc.v2"
