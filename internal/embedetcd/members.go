package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one etcd member of the servers' cluster.
type Member struct {
	ID       uint64
	Name     string
	PeerURLs []string
	// Learner is a member that receives the log but does not vote yet:
	// a joining server's, until it has caught up.
	Learner bool
	// Leader says the member leads the raft group now.
	Leader bool
}

// Members manages the members of the cluster etcd's client is on.
type Members struct {
	cli *clientv3.Client
}

// NewMembers manages the cluster of cli.
func NewMembers(cli *clientv3.Client) *Members { return &Members{cli: cli} }

// List is every member, with the raft leader marked.
func (m *Members) List(ctx context.Context) ([]Member, error) {
	resp, err := m.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", classify(err))
	}
	var leader uint64
	if len(m.cli.Endpoints()) > 0 {
		if st, err := m.cli.Status(ctx, m.cli.Endpoints()[0]); err == nil {
			leader = st.Leader
		}
	}
	out := make([]Member, 0, len(resp.Members))
	for _, pm := range resp.Members {
		out = append(out, fromPB(pm, leader))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// AddLearner adds a member called name, reached on peerURL, as a learner
// and returns the initial cluster it must start with. A learner does not
// count for the quorum, so a server that fails to start after this leaves
// the cluster as available as before. A member already on peerURL that
// has not started yet (an earlier join attempt that failed) is reused.
func (m *Members) AddLearner(ctx context.Context, name, peerURL string) (string, error) {
	list, err := m.cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("list etcd members: %w", classify(err))
	}
	var self *etcdserverpb.Member
	for _, pm := range list.Members {
		switch {
		case slices.Contains(pm.PeerURLs, peerURL):
			if pm.Name != "" && pm.Name != name {
				return "", fmt.Errorf("etcd member %s already has peer URL %s: %w", pm.Name, peerURL, errdefs.ErrAlreadyExists)
			}
			self = pm
		case pm.Name == name:
			return "", fmt.Errorf("a server called %s is already a member (on %s); remove it first: %w",
				name, strings.Join(pm.PeerURLs, ","), errdefs.ErrAlreadyExists)
		}
	}
	members := list.Members
	if self == nil {
		resp, err := m.cli.MemberAddAsLearner(ctx, []string{peerURL})
		if err != nil {
			return "", fmt.Errorf("add etcd member %s: %w", name, classify(err))
		}
		members = resp.Members
	}
	var parts []string
	for _, pm := range members {
		n := pm.Name
		if slices.Contains(pm.PeerURLs, peerURL) {
			n = name // the new member has no name until it starts
		}
		if n == "" {
			continue // another join that has not started: not ours to name
		}
		for _, u := range pm.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ","), nil
}

// Promote makes the learner called name a voting member. Until it has
// caught up with the leader, etcd refuses: that is errdefs.ErrUnavailable,
// to be retried.
func (m *Members) Promote(ctx context.Context, name string) error {
	pm, err := m.find(ctx, name)
	if err != nil {
		return err
	}
	if !pm.IsLearner {
		return nil
	}
	if _, err := m.cli.MemberPromote(ctx, pm.ID); err != nil {
		if errors.Is(err, rpctypes.ErrMemberLearnerNotReady) || strings.Contains(err.Error(), rpctypes.ErrMemberLearnerNotReady.Error()) {
			return fmt.Errorf("etcd member %s has not caught up with the leader yet: %w", name, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("promote etcd member %s: %w", name, classify(err))
	}
	return nil
}

// Remove takes the member called name out of the cluster. Removing the
// last voting member, or one that would leave too few to keep a quorum
// of the remaining, is etcd's to refuse.
func (m *Members) Remove(ctx context.Context, name string) error {
	pm, err := m.find(ctx, name)
	if err != nil {
		return err
	}
	if _, err := m.cli.MemberRemove(ctx, pm.ID); err != nil {
		return fmt.Errorf("remove etcd member %s: %w", name, classify(err))
	}
	return nil
}

func (m *Members) find(ctx context.Context, name string) (*etcdserverpb.Member, error) {
	list, err := m.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", classify(err))
	}
	for _, pm := range list.Members {
		if pm.Name == name {
			return pm, nil
		}
	}
	return nil, fmt.Errorf("etcd member %s: %w", name, errdefs.ErrNotFound)
}

func fromPB(pm *etcdserverpb.Member, leader uint64) Member {
	return Member{ID: pm.ID, Name: pm.Name, PeerURLs: slices.Clone(pm.PeerURLs), Learner: pm.IsLearner, Leader: pm.ID == leader}
}

// classify gives etcd's cluster errors an errdefs class.
func classify(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrMemberNotFound):
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case errors.Is(err, rpctypes.ErrPeerURLExist), errors.Is(err, rpctypes.ErrMemberExist):
		return fmt.Errorf("%w: %w", errdefs.ErrAlreadyExists, err)
	case errors.Is(err, rpctypes.ErrUnhealthy), errors.Is(err, rpctypes.ErrTooManyLearners),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrMemberNotLearner):
		return fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return err
}
