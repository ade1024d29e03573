package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Op is one conditional write of a Commit: a create (the key must be
// absent), an update or a delete (the key must still be at a revision).
type Op struct {
	key   string
	value any
	del   bool
	// rev is the mod revision the key must have; 0 for a create.
	rev int64
	// put writes whatever is there; check writes nothing.
	put, check bool
}

// OpCreate stores v at key if key is absent.
func OpCreate(key string, v any) Op { return Op{key: key, value: v} }

// OpUpdate stores v at key if key is still at mod revision rev (> 0).
func OpUpdate(key string, v any, rev int64) Op { return Op{key: key, value: v, rev: rev} }

// OpDelete removes key if it is still at mod revision rev (> 0).
func OpDelete(key string, rev int64) Op { return Op{key: key, del: true, rev: rev} }

// OpPut stores v at key whatever is there: the write of a record with a
// single writer, made together with conditional ones (a status written
// only while its group is at a revision).
func OpPut(key string, v any) Op { return Op{key: key, value: v, put: true} }

// OpCheck writes nothing; the commit holds only if key is still at mod
// revision rev (> 0). It fences a write on a record it depends on.
func OpCheck(key string, rev int64) Op { return Op{key: key, rev: rev, check: true} }

// Commit applies every op or none, in one etcd transaction. It is for
// writes that must agree, such as a group and the claim on its DNS name.
// When any op's condition does not hold it fails with errdefs.ErrConflict:
// re-read and retry.
func (s *Store) Commit(ctx context.Context, ops ...Op) (int64, error) {
	if len(ops) == 0 {
		return 0, nil
	}
	var (
		cmps  []clientv3.Cmp
		puts  []clientv3.Op
		names []string
	)
	for _, op := range ops {
		k := s.prefix + op.key
		names = append(names, op.key)
		switch {
		case op.put:
			b, err := s.encode(op.key, op.value)
			if err != nil {
				return 0, err
			}
			puts = append(puts, clientv3.OpPut(k, string(b)))
			continue
		case op.check && op.rev <= 0:
			return 0, fmt.Errorf("store: commit: check of %q without a revision: %w", op.key, errdefs.ErrInvalidArgument)
		case op.check:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", op.rev))
			continue
		case op.rev == 0 && op.del:
			return 0, fmt.Errorf("store: commit: delete %q without a revision: %w", op.key, errdefs.ErrInvalidArgument)
		case op.rev == 0:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		case op.rev < 0:
			return 0, fmt.Errorf("store: commit: %q at revision %d: %w", op.key, op.rev, errdefs.ErrInvalidArgument)
		default:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", op.rev))
		}
		if op.del {
			puts = append(puts, clientv3.OpDelete(k))
			continue
		}
		b, err := s.encode(op.key, op.value)
		if err != nil {
			return 0, err
		}
		puts = append(puts, clientv3.OpPut(k, string(b)))
	}
	resp, err := s.c.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return 0, fmt.Errorf("store: commit %s: %w", strings.Join(names, ", "), classify(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: commit %s: a key changed meanwhile: %w", strings.Join(names, ", "), errdefs.ErrConflict)
	}
	return resp.Header.Revision, nil
}
