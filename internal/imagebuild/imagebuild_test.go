package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is what a test expects of one tar entry.
type entry struct {
	typ  byte
	mode int64
	data string
	link string
}

// layerEntries reads the image's single layer into a map by path.
func layerEntries(t *testing.T, img v1.Image) (map[string]entry, []string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("Layers: %v", err)
	}
	if len(layers) != 1 {
		t.Fatalf("got %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatalf("Uncompressed: %v", err)
	}
	defer rc.Close()
	got := map[string]entry{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read layer tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		got[hdr.Name] = entry{typ: hdr.Typeflag, mode: hdr.Mode, data: string(data), link: hdr.Linkname}
		order = append(order, hdr.Name)
	}
	return got, order
}

func TestBuild(t *testing.T) {
	files := []File{
		{Path: "/app/server", Mode: 0o755, Data: []byte("binary")},
		{Path: "/etc/motd", Data: []byte("hi\n")},
		{Path: "/bin/sh", Link: "/app/server"},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/empty", Data: []byte{}},
	}
	cfg := Config{
		Entrypoint:   []string{"/app/server"},
		Cmd:          []string{"--flag"},
		Env:          []string{"A=1", "PATH=/bin"},
		ExposedPorts: []string{"80/tcp", "53/udp"},
		WorkingDir:   "/app",
	}
	img, err := Build(files, cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}

	t.Run("media types are OCI", func(t *testing.T) {
		mt, err := img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		if mt != types.OCIManifestSchema1 {
			t.Errorf("got manifest media type %s, want %s", mt, types.OCIManifestSchema1)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("got config media type %s, want %s", m.Config.MediaType, types.OCIConfigJSON)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
			t.Errorf("got layers %+v, want one %s", m.Layers, types.OCILayer)
		}
	})

	t.Run("config holds what was asked", func(t *testing.T) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" {
			t.Errorf("got platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
		}
		want := v1.Config{
			Entrypoint:   cfg.Entrypoint,
			Cmd:          cfg.Cmd,
			Env:          cfg.Env,
			WorkingDir:   "/app",
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		}
		if !reflect.DeepEqual(cf.Config, want) {
			t.Errorf("got config %+v, want %+v", cf.Config, want)
		}
		if len(cf.RootFS.DiffIDs) != 1 {
			t.Errorf("got %d diff IDs, want 1", len(cf.RootFS.DiffIDs))
		}
	})

	t.Run("layer holds the files and their parents", func(t *testing.T) {
		got, order := layerEntries(t, img)
		want := map[string]entry{
			"app/":       {typ: tar.TypeDir, mode: 0o755},
			"app/server": {typ: tar.TypeReg, mode: 0o755, data: "binary"},
			"bin/":       {typ: tar.TypeDir, mode: 0o755},
			"bin/sh":     {typ: tar.TypeSymlink, mode: 0o777, link: "/app/server"},
			"empty":      {typ: tar.TypeReg, mode: 0o644},
			"etc/":       {typ: tar.TypeDir, mode: 0o755},
			"etc/motd":   {typ: tar.TypeReg, mode: 0o644, data: "hi\n"},
			"tmp/":       {typ: tar.TypeDir, mode: 0o1777},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got entries %+v, want %+v", got, want)
		}
		seen := map[string]bool{}
		for _, p := range order {
			if dir, _, ok := strings.Cut(p, "/"); ok && dir+"/" != p && !seen[dir+"/"] {
				t.Errorf("entry %s comes before its directory", p)
			}
			seen[p] = true
		}
	})

	t.Run("the same files give the same digest", func(t *testing.T) {
		again, err := Build(files, cfg)
		if err != nil {
			t.Fatal(err)
		}
		d1, _ := img.Digest()
		d2, _ := again.Digest()
		if d1 != d2 {
			t.Errorf("got digests %s and %s, want equal", d1, d2)
		}
	})
}

func TestBuild_Invalid(t *testing.T) {
	tests := []struct {
		name  string
		files []File
		cfg   Config
	}{
		{name: "a relative path is refused", files: []File{{Path: "bin/x"}}},
		{name: "an unclean path is refused", files: []File{{Path: "/bin/../x"}}},
		{name: "the root itself is refused", files: []File{{Path: "/", Dir: true}}},
		{name: "a path listed twice is refused", files: []File{{Path: "/x"}, {Path: "/x"}}},
		{name: "a file used as a directory is refused", files: []File{{Path: "/x"}, {Path: "/x/y"}}},
		{name: "a symlink with data is refused", files: []File{{Path: "/x", Link: "y", Data: []byte("z")}}},
		{name: "a directory with data is refused", files: []File{{Path: "/x", Dir: true, Data: []byte("z")}}},
		{name: "file type bits in the mode are refused", files: []File{{Path: "/x", Mode: 0o100644}}},
		{name: "a port without protocol is refused", cfg: Config{ExposedPorts: []string{"80"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.files, tt.cfg)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("got error %v, want invalid argument", err)
			}
		})
	}
}

func TestBusyboxFiles(t *testing.T) {
	files, err := BusyboxFiles()
	if err != nil {
		if os.Getenv("BERTH_E2E") == "1" {
			t.Fatalf("BusyboxFiles: %v (BERTH_E2E=1 forbids skipping)", err)
		}
		t.Skipf("busybox-static not installed: %v", err)
	}
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	if f := byPath["/bin/busybox"]; len(f.Data) == 0 || f.Mode != 0o755 {
		t.Errorf("got /bin/busybox with %d bytes mode %o, want the binary with mode 755", len(f.Data), f.Mode)
	}
	for _, applet := range []string{"sh", "wget", "sleep", "cat"} {
		if f := byPath["/bin/"+applet]; f.Link != "busybox" {
			t.Errorf("got /bin/%s link %q, want busybox", applet, f.Link)
		}
	}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/tmp"} {
		if _, ok := byPath[p]; !ok {
			t.Errorf("missing %s", p)
		}
	}
	if _, err := Build(files, Config{}); err != nil {
		t.Errorf("Build of busybox files: %v", err)
	}
}

// basicAuth wraps h so that it demands user:pass on every request.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestPush(t *testing.T) {
	img, err := Build([]File{{Path: "/hello", Data: []byte("hi")}}, Config{Cmd: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	ctx := context.Background()
	quiet := registry.Logger(log.New(io.Discard, "", 0))

	tests := []struct {
		name    string
		handler http.Handler
		auth    *Basic
		wantErr bool
	}{
		{name: "anonymous push to an open registry works", handler: registry.New(quiet)},
		{name: "push with the right password works", handler: basicAuth(registry.New(quiet), "u", "p"), auth: &Basic{Username: "u", Password: "p"}},
		{name: "push with a wrong password fails", handler: basicAuth(registry.New(quiet), "u", "p"), auth: &Basic{Username: "u", Password: "x"}, wantErr: true},
		{name: "anonymous push to a closed registry fails", handler: basicAuth(registry.New(quiet), "u", "p"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			ref := strings.TrimPrefix(srv.URL, "http://") + "/berth/test:1"
			err := Push(ctx, img, ref, true, tt.auth)
			if tt.wantErr {
				if err == nil {
					t.Fatal("got no error, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			r, err := name.ParseReference(ref, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			var opts []remote.Option
			if tt.auth != nil {
				opts = append(opts, remote.WithAuth(&authn.Basic{Username: tt.auth.Username, Password: tt.auth.Password}))
			}
			desc, err := remote.Head(r, opts...)
			if err != nil {
				t.Fatalf("Head %s: %v", ref, err)
			}
			if desc.Digest != want {
				t.Errorf("got digest %s in the registry, want %s", desc.Digest, want)
			}
		})
	}
}

func TestPush_BadReference(t *testing.T) {
	img, err := Build(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Push(context.Background(), img, "Not A Ref", true, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("got %v, want invalid argument", err)
	}
}
