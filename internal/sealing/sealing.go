// Package sealing encrypts secret values at rest (--encryption-key-file):
// AES-256-GCM with a key read from a file, in a stored form that names its
// format and its key, so that a server with the wrong key, or none, says so
// instead of handing out ciphertext as a value.
//
// A stored value is one of:
//
//	berth:aesgcm:v1:<key ID>:<base64(nonce || ciphertext || tag)>  sealed
//	berth:plain:<value>                                             a plain value that starts with "berth:"
//	<value>                                                         any other plain value
//
// The escape keeps a plain value that happens to look sealed from being
// mistaken for one: without it, a user could store a value that no server
// can read.
package sealing

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// KeySize is the length of a key: AES-256.
	KeySize = 32

	prefix       = "berth:"
	sealedPrefix = "berth:aesgcm:"
	v1Prefix     = "berth:aesgcm:v1:"
	plainPrefix  = "berth:plain:"
	idLen        = 8
)

// ErrKeyUnavailable: a value is sealed with a key this server does not
// have, either because it has none or because it has another. Errors that
// wrap it also wrap errdefs.ErrFailedPrecondition.
var ErrKeyUnavailable = errors.New("encryption key unavailable")

// Key is an AES-256-GCM key. A nil *Key is the key of a server started
// without --encryption-key-file: it stores values plain and cannot open
// sealed ones.
type Key struct {
	aead cipher.AEAD
	id   string
}

// NewKey returns the key made of raw, which must be KeySize bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("sealing: key of %d bytes, want %d: %w", len(raw), KeySize, errdefs.ErrInvalidArgument)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	// The random 96-bit nonce goes in front of the ciphertext. A key
	// seals one value per secret per write of a group spec, far below the
	// 2^32 messages random nonces allow.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	sum := sha256.Sum256(raw)
	return &Key{aead: aead, id: hex.EncodeToString(sum[:])[:idLen]}, nil
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return NewKey(raw)
}

// LoadKeyFile reads a key file: KeySize random bytes, base64 (standard
// encoding) on one line, as `head -c 32 /dev/urandom | base64` writes them.
// A file that its group or others may read is refused: the key is worth
// as much as every secret it seals.
func LoadKeyFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("encryption key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("encryption key file %s: not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("encryption key file %s: mode %04o lets group or others read it; chmod 600 it: %w", path, perm, errdefs.ErrInvalidArgument)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("encryption key file: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("encryption key file %s: want %d bytes in base64 (head -c %d /dev/urandom | base64): %w", path, KeySize, KeySize, errdefs.ErrInvalidArgument)
	}
	k, err := NewKey(raw)
	if err != nil {
		return nil, fmt.Errorf("encryption key file %s: %w", path, err)
	}
	return k, nil
}

// ID names the key in sealed values: the first 8 hex digits of the
// SHA-256 of the key. It tells keys apart and reveals nothing useful.
func (k *Key) ID() string {
	if k == nil {
		return "none"
	}
	return k.id
}

// Seal returns the stored form of plain, bound to ad (the record's key in
// the store): Open needs the same ad, so a sealed value copied into
// another record does not open. A nil key returns plain, escaped when it
// starts with "berth:".
func (k *Key) Seal(plain, ad []byte) []byte {
	if k == nil {
		if strings.HasPrefix(string(plain), prefix) {
			return append([]byte(plainPrefix), plain...)
		}
		return plain
	}
	ct := k.aead.Seal(nil, nil, plain, ad)
	out := make([]byte, 0, len(v1Prefix)+idLen+1+base64.StdEncoding.EncodedLen(len(ct)))
	out = append(out, v1Prefix...)
	out = append(out, k.id...)
	out = append(out, ':')
	return base64.StdEncoding.AppendEncode(out, ct)
}

// Open returns the plain value of a stored form, sealed or not. A value
// sealed with another key than k, or any key when k is nil, is
// ErrKeyUnavailable; one that fails authentication (altered, or moved from
// another record) is errdefs.ErrDataLoss.
func (k *Key) Open(stored, ad []byte) ([]byte, error) {
	s := string(stored)
	switch {
	case strings.HasPrefix(s, plainPrefix):
		return stored[len(plainPrefix):], nil
	case !strings.HasPrefix(s, sealedPrefix):
		// Plain, including a value stored before the server had a key:
		// the next write seals it.
		return stored, nil
	case !strings.HasPrefix(s, v1Prefix):
		return nil, fmt.Errorf("sealing: value sealed in an unknown format %q: %w", formatOf(s), errdefs.ErrDataLoss)
	}
	id, payload, ok := strings.Cut(s[len(v1Prefix):], ":")
	if !ok || len(id) != idLen {
		return nil, fmt.Errorf("sealing: malformed sealed value: %w", errdefs.ErrDataLoss)
	}
	if k == nil {
		return nil, fmt.Errorf("sealing: value sealed with key %s, but the server has no key (--encryption-key-file): %w: %w", id, ErrKeyUnavailable, errdefs.ErrFailedPrecondition)
	}
	if id != k.id {
		return nil, fmt.Errorf("sealing: value sealed with key %s, but the server has key %s: %w: %w", id, k.id, ErrKeyUnavailable, errdefs.ErrFailedPrecondition)
	}
	ct, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("sealing: malformed sealed value: %w: %w", errdefs.ErrDataLoss, err)
	}
	plain, err := k.aead.Open(nil, nil, ct, ad)
	if err != nil {
		return nil, fmt.Errorf("sealing: sealed value does not open with key %s (altered, or not sealed for this record): %w", id, errdefs.ErrDataLoss)
	}
	return plain, nil
}

// formatOf is the format part of a sealed value ("berth:aesgcm:v9"), never
// its payload, for error messages.
func formatOf(s string) string {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) < 3 {
		return prefix
	}
	return strings.Join(parts[:3], ":")
}
