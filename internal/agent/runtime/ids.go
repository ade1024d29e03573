package runtime

// ContainerID names the container name of group incarnation uid in
// containerd: unique per incarnation and within containerd's 76-character
// limit. Under sandboxed isolation ids end in "_s": runsc finds a
// container by id prefix and would take "…-web" for "…-web2" as well, and
// no other id of the group can continue one ending in "_s" (container
// names hold no "_"); two digits of the uid go to stay within the limit.
func (r *Runtime) ContainerID(uid, name string) string {
	return containerID(r.opts.Isolation, uid, name)
}

func containerID(iso Isolation, uid, name string) string {
	if iso == IsolationSandboxed {
		return uid[:10] + "-" + name + "_s"
	}
	return uid[:12] + "-" + name
}
