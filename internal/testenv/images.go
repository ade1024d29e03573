package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/imagebuild"
)

// builds caches one build per package and test binary: tests call the
// helpers freely and only the first pays for the compile.
var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// BuildGoBinary compiles the Go package pkg (a full import path inside the
// Berth module) as a static, stripped binary and returns its path. The
// binary is built once per test binary.
func BuildGoBinary(t testing.TB, pkg string) string {
	t.Helper()
	return cachedBuild(t, "static", pkg, func(ctx context.Context, out string) error {
		return imagebuild.GoBuild(ctx, pkg, out)
	})
}

// cachedBuild runs fn once per kind and package. The output goes to a fixed
// per-package path under the user cache directory, written through a
// rename, so that repeated runs do not pile up binaries in /tmp and
// concurrent test binaries never see a half-written file.
func cachedBuild(t testing.TB, kind, pkg string, fn func(ctx context.Context, out string) error) string {
	t.Helper()
	key := kind + " " + pkg
	buildsMu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()

	b.once.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "berth-test", kind)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = fmt.Errorf("create build dir: %w", err)
			return
		}
		final := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_"))
		tmp, err := os.CreateTemp(dir, ".build-*")
		if err != nil {
			b.err = fmt.Errorf("create build output: %w", err)
			return
		}
		tmp.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := fn(ctx, tmp.Name()); err != nil {
			os.Remove(tmp.Name())
			b.err = err
			return
		}
		if err := os.Rename(tmp.Name(), final); err != nil {
			os.Remove(tmp.Name())
			b.err = fmt.Errorf("install %s: %w", final, err)
			return
		}
		b.path = final
	})
	if b.err != nil {
		t.Fatalf("build %s: %v", pkg, b.err)
	}
	return b.path
}

// PushHelloImage pushes the hello image (imagebuild.HelloImage: /hello
// serving "Hello from Berth" on port 80) to reg and returns its reference,
// "<reg.Addr>/berth/hello:1".
func PushHelloImage(t testing.TB, reg *Registry) string {
	t.Helper()
	binary, err := os.ReadFile(BuildGoBinary(t, imagebuild.HelloPackage))
	if err != nil {
		t.Fatalf("read hello binary: %v", err)
	}
	img, err := imagebuild.HelloImage(binary)
	if err != nil {
		t.Fatalf("build hello image: %v", err)
	}
	ref := reg.Ref(imagebuild.HelloRepository)
	PushImage(t, ref, img, nil)
	return ref
}

// PushBusyboxImage pushes the busybox image (imagebuild.BusyboxImage) to
// reg and returns its reference, "<reg.Addr>/berth/busybox:1".
func PushBusyboxImage(t testing.TB, reg *Registry) string {
	t.Helper()
	img, err := imagebuild.BusyboxImage()
	if err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	ref := reg.Ref(imagebuild.BusyboxRepository)
	PushImage(t, ref, img, nil)
	return ref
}

// PushImage pushes img as ref over plain HTTP, with auth when it is not nil.
func PushImage(t testing.TB, ref string, img v1.Image, auth *imagebuild.Basic) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := imagebuild.Push(ctx, img, ref, true, auth); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
