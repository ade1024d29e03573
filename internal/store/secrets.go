package store

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/sealing"
)

// secretHolder is a value with secret fields (types.ContainerGroup). The
// store seals them on every write and opens them on every read, so that
// the rest of Berth deals in plain values while etcd holds none, when the
// server has a key (--encryption-key-file).
type secretHolder interface {
	MapSecrets(func([]byte) ([]byte, error)) error
}

var holderType = reflect.TypeFor[secretHolder]()

// Option configures a Store.
type Option func(*Store)

// WithKey seals the secrets of the values the store writes with k, and
// opens the sealed secrets of the values it reads. A store without a key
// writes secrets plain and fails the read of a sealed one with
// sealing.ErrKeyUnavailable.
func WithKey(k *sealing.Key) Option {
	return func(s *Store) { s.key = k }
}

// sealSecrets returns b, the JSON of v, with v's secrets sealed for the
// record at key: the record key is the additional data, so a sealed value
// copied into another record does not open.
func sealSecrets(k *sealing.Key, key string, v any, b []byte) ([]byte, error) {
	t := reflect.TypeOf(v)
	if t == nil {
		return b, nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !reflect.PointerTo(t).Implements(holderType) {
		return b, nil
	}
	// Seal a copy made from the JSON: v's maps and slices are the caller's.
	cp := reflect.New(t)
	if err := json.Unmarshal(b, cp.Interface()); err != nil {
		return nil, fmt.Errorf("store: encode %q: %w: %w", key, errdefs.ErrInvalidArgument, err)
	}
	ad := []byte(key)
	// Seal never fails; MapSecrets passes on errors only.
	_ = cp.Interface().(secretHolder).MapSecrets(func(p []byte) ([]byte, error) {
		return k.Seal(p, ad), nil
	})
	out, err := json.Marshal(cp.Interface())
	if err != nil {
		return nil, fmt.Errorf("store: encode %q: %w: %w", key, errdefs.ErrInvalidArgument, err)
	}
	return out, nil
}

// openSecrets opens the secrets of out, just decoded from the record at
// key. On failure it zeroes out, so no caller ever holds a sealed value
// as if it were the secret.
func openSecrets(k *sealing.Key, key string, out any) error {
	h, ok := out.(secretHolder)
	if !ok {
		return nil
	}
	ad := []byte(key)
	if err := h.MapSecrets(func(p []byte) ([]byte, error) { return k.Open(p, ad) }); err != nil {
		if v := reflect.ValueOf(out); v.Kind() == reflect.Pointer && !v.IsNil() {
			v.Elem().SetZero()
		}
		return fmt.Errorf("store: decode %q: %w", key, err)
	}
	return nil
}
