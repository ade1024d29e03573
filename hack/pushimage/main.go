// Command pushimage builds one of Berth's test images and pushes it to a
// plain-HTTP registry, for `make run` and manual testing:
//
//	go run ./hack/pushimage --registry 127.0.0.1:5000 --image hello
//
// The images are the ones the tests use (internal/imagebuild recipes).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "pushimage: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pushimage", flag.ContinueOnError)
	registry := fs.String("registry", "127.0.0.1:5000", "registry host:port (plain HTTP)")
	image := fs.String("image", "", "image to push: hello or busybox")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	var (
		img     v1.Image
		repoTag string
		err     error
	)
	switch *image {
	case "hello":
		repoTag = imagebuild.HelloRepository
		img, err = helloImage(ctx)
	case "busybox":
		repoTag = imagebuild.BusyboxRepository
		img, err = imagebuild.BusyboxImage()
	case "":
		return errors.New("--image is required (hello or busybox)")
	default:
		return fmt.Errorf("unknown image %q (want hello or busybox)", *image)
	}
	if err != nil {
		return err
	}
	ref := *registry + "/" + repoTag
	if err := imagebuild.Push(ctx, img, ref, true, nil); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	fmt.Fprintf(stdout, "pushed %s@%s\n", ref, digest)
	return nil
}

// helloImage compiles the hello server and wraps it in its image.
func helloImage(ctx context.Context) (v1.Image, error) {
	dir, err := os.MkdirTemp("", "pushimage-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "hello")
	if err := imagebuild.GoBuild(ctx, imagebuild.HelloPackage, out); err != nil {
		return nil, err
	}
	binary, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("read hello binary: %w", err)
	}
	return imagebuild.HelloImage(binary)
}
