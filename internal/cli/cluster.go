package cli

import (
	"github.com/spf13/cobra"
)

// The cluster commands are the admin's, like the node commands: they
// manage the servers (their etcd members, the leader) and the store.

func newClusterCommand() *cobra.Command {
	cmd := groupCommand("cluster", "Manage the servers of the cluster and their store",
		`Manage the servers of a Berth cluster: create the one-time tokens with which
'berth server --join' adds a server and its embedded etcd member, list the
members and the leader, remove a member, and save a snapshot of the store.
These commands need the admin's token.`)
	cmd.AddCommand(newClusterSnapshotCommand())
	return cmd
}
