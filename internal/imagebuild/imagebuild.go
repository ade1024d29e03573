// Package imagebuild builds small OCI images from in-memory files and pushes
// them to a registry. Berth's tests and `make run` use it to publish the
// images they run, so no Docker daemon or base image download is needed.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of an image's filesystem.
type File struct {
	// Path is absolute and clean, e.g. "/bin/busybox".
	Path string
	// Mode holds the permission bits plus setuid, setgid and sticky
	// (e.g. 0o1777). Zero means 0o644 for files, 0o755 for directories and
	// 0o777 for symlinks.
	Mode int64
	// Data is a regular file's content.
	Data []byte
	// Link, when set, makes the entry a symlink to this target.
	Link string
	// Dir makes the entry a directory. Parent directories of every entry
	// are created with mode 0o755 when not listed, so Dir is only needed
	// for empty directories or unusual modes.
	Dir bool
}

// Config is the part of the OCI image config Berth's images set.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// ExposedPorts are "port/protocol" pairs, e.g. "80/tcp".
	ExposedPorts []string
	WorkingDir   string
}

// Basic is a registry user name and password.
type Basic struct {
	Username string
	Password string
}

// epoch is every entry's modification time, so the same files always give
// the same digest.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Build returns a linux/amd64 image with OCI manifest and config media types
// whose only layer, gzip-compressed, holds files.
func Build(files []File, cfg Config) (v1.Image, error) {
	layerData, err := layerTarGzip(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("create layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		WorkingDir: cfg.WorkingDir,
	}
	for _, p := range cfg.ExposedPorts {
		if !strings.Contains(p, "/") {
			return nil, fmt.Errorf("exposed port %q: want port/protocol: %w", p, errdefs.ErrInvalidArgument)
		}
		if cf.Config.ExposedPorts == nil {
			cf.Config.ExposedPorts = map[string]struct{}{}
		}
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// layerTarGzip writes files, plus their missing parent directories, as a
// gzip-compressed tar sorted by path so that parents precede children.
func layerTarGzip(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		if err := validate(f); err != nil {
			return nil, err
		}
		if _, dup := entries[f.Path]; dup {
			return nil, fmt.Errorf("file %s listed twice: %w", f.Path, errdefs.ErrInvalidArgument)
		}
		entries[f.Path] = f
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			if e, ok := entries[dir]; ok {
				if !e.Dir {
					return nil, fmt.Errorf("%s is a parent of %s but not a directory: %w", dir, f.Path, errdefs.ErrInvalidArgument)
				}
				continue
			}
			entries[dir] = File{Path: dir, Dir: true}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, p := range paths {
		f := entries[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    f.Mode,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.Dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		case f.Link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.Link
			if hdr.Mode == 0 {
				hdr.Mode = 0o777
			}
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header for %s: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("write %s: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("close gzip: %w", err)
	}
	return buf.Bytes(), nil
}

func validate(f File) error {
	switch {
	case !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/":
		return fmt.Errorf("file path %q: want an absolute, clean path below /: %w", f.Path, errdefs.ErrInvalidArgument)
	case f.Dir && (f.Link != "" || f.Data != nil):
		return fmt.Errorf("file %s: a directory has no data or link target: %w", f.Path, errdefs.ErrInvalidArgument)
	case f.Link != "" && f.Data != nil:
		return fmt.Errorf("file %s: a symlink has no data: %w", f.Path, errdefs.ErrInvalidArgument)
	case f.Mode&^0o7777 != 0:
		return fmt.Errorf("file %s: mode %o has bits beyond 07777: %w", f.Path, f.Mode, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Push uploads img as ref. insecure allows plain HTTP, which a local test
// registry serves; auth nil pushes anonymously.
func Push(ctx context.Context, img v1.Image, ref string, insecure bool, auth *Basic) error {
	var nameOpts []name.Option
	if insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return fmt.Errorf("parse image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if auth != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: auth.Username, Password: auth.Password}))
	} else {
		opts = append(opts, remote.WithAuth(authn.Anonymous))
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}
