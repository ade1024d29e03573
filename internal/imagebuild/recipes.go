package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The recipes below are the test images Berth's tests and `make run` push.
// They live here, once, so that what a test runs and what a developer runs
// by hand are the same image.

const (
	// HelloRepository and BusyboxRepository are the repository paths (below
	// a registry host) and tags of the two images.
	HelloRepository   = "berth/hello:1"
	BusyboxRepository = "berth/busybox:1"

	// HelloPackage is the Go package of the hello server.
	HelloPackage = "github.com/berth-dev/berth/test/images/hello"

	// BusyboxPath is Debian busybox-static's binary.
	BusyboxPath = "/bin/busybox"
)

// defaultEnv gives processes the PATH a shell expects; containerd only adds
// one when the image has no environment at all.
var defaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// HelloImage returns the hello image: the static hello server binary as
// /hello, its entrypoint, listening on port 80.
func HelloImage(binary []byte) (v1.Image, error) {
	files := []File{{Path: "/hello", Mode: 0o755, Data: binary}}
	return Build(append(files, baseFiles()...), Config{
		Entrypoint:   []string{"/hello"},
		Env:          defaultEnv,
		ExposedPorts: []string{"80/tcp"},
	})
}

// BusyboxImage returns the busybox image. Its default command prints
// "busybox: started" and then idles until SIGTERM, which it obeys at once
// (a shell as PID 1 would otherwise ignore it).
func BusyboxImage() (v1.Image, error) {
	files, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	return Build(files, Config{
		Cmd: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; echo busybox: started; while true; do sleep 1 & wait $!; done"},
		Env: defaultEnv,
	})
}

// BusyboxFiles returns the host's static busybox as /bin/busybox, a symlink
// in /bin for each of its applets, /etc/passwd, /etc/group and /tmp.
func BusyboxFiles() ([]File, error) {
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	files := []File{{Path: "/bin/busybox", Mode: 0o755, Data: data}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		applet := strings.TrimSpace(sc.Text())
		if applet == "" || applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, File{Path: path.Join("/bin", applet), Link: "busybox"})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read busybox applets: %w", err)
	}
	return append(files, baseFiles()...), nil
}

// baseFiles are the few files every image needs so that user lookups and
// temporary files work.
func baseFiles() []File {
	return []File{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "/root", Dir: true, Mode: 0o700},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
	}
}

// GoBuild compiles the Go package pkg into a static, stripped binary at out.
// It must run inside the Berth module (any directory of it).
func GoBuild(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
