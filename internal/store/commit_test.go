package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/embedetcd/etcdtest"
	"github.com/berth-dev/berth/internal/store"
)

func TestStore_Commit(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewClient(t)
	tests := []struct {
		name string
		run  func(ctx context.Context, t *testing.T, s *store.Store) error
		want error
	}{
		{
			name: "create, update and delete apply together",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				revB := mustCreate(ctx, t, s, "b", record{N: 1})
				revC := mustCreate(ctx, t, s, "c", record{N: 1})
				rev, err := s.Commit(ctx, store.OpCreate("a", record{N: 1}), store.OpUpdate("b", record{N: 2}, revB), store.OpDelete("c", revC))
				if err != nil {
					return err
				}
				if got := assertValue(ctx, t, s, "a", record{N: 1}); got != rev {
					t.Errorf("a stored at %d, commit returned %d", got, rev)
				}
				assertValue(ctx, t, s, "b", record{N: 2})
				if _, err := s.Get(ctx, "c", &record{}); !errdefs.IsNotFound(err) {
					t.Errorf("c after commit: %v, want not found", err)
				}
				return nil
			},
		},
		{
			name: "a create of an existing key is a conflict and writes nothing",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				mustCreate(ctx, t, s, "a", record{N: 1})
				_, err := s.Commit(ctx, store.OpCreate("b", record{N: 1}), store.OpCreate("a", record{N: 2}))
				assertValue(ctx, t, s, "a", record{N: 1})
				if _, gerr := s.Get(ctx, "b", &record{}); !errdefs.IsNotFound(gerr) {
					t.Errorf("b after failed commit: %v, want not found", gerr)
				}
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "a stale update revision is a conflict and writes nothing",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if _, err := s.Update(ctx, "a", record{N: 2}, rev); err != nil {
					t.Fatal(err)
				}
				_, err := s.Commit(ctx, store.OpCreate("b", record{N: 1}), store.OpUpdate("a", record{N: 3}, rev))
				assertValue(ctx, t, s, "a", record{N: 2})
				if _, gerr := s.Get(ctx, "b", &record{}); !errdefs.IsNotFound(gerr) {
					t.Errorf("b after failed commit: %v, want not found", gerr)
				}
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "a put and a check commit while the checked key is unchanged",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "group", record{N: 1})
				mustCreate(ctx, t, s, "status", record{N: 1})
				if _, err := s.Commit(ctx, store.OpCheck("group", rev), store.OpPut("status", record{N: 2})); err != nil {
					return err
				}
				assertValue(ctx, t, s, "status", record{N: 2})
				assertValue(ctx, t, s, "group", record{N: 1})
				return nil
			},
		},
		{
			name: "a check of a changed key is a conflict and the put is not made",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "group", record{N: 1})
				if _, err := s.Update(ctx, "group", record{N: 2}, rev); err != nil {
					t.Fatal(err)
				}
				_, err := s.Commit(ctx, store.OpCheck("group", rev), store.OpPut("status", record{N: 2}))
				if _, gerr := s.Get(ctx, "status", &record{}); !errdefs.IsNotFound(gerr) {
					t.Errorf("status after failed commit: %v, want not found", gerr)
				}
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "a check needs a revision",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Commit(ctx, store.OpCheck("group", 0))
				return err
			},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "a delete of a key that is gone is a conflict",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				rev := mustCreate(ctx, t, s, "a", record{N: 1})
				if err := s.Delete(ctx, "a", rev); err != nil {
					t.Fatal(err)
				}
				_, err := s.Commit(ctx, store.OpDelete("a", rev))
				return err
			},
			want: errdefs.ErrConflict,
		},
		{
			name: "a delete without a revision is an invalid argument",
			run: func(ctx context.Context, t *testing.T, s *store.Store) error {
				_, err := s.Commit(ctx, store.OpDelete("a", 0))
				return err
			},
			want: errdefs.ErrInvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := store.New(c, "/commit/"+t.Name()+"/")
			err := tt.run(t.Context(), t, s)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
		})
	}
}
