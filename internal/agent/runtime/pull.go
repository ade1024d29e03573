package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// RegistryAuth is a credential for one registry.
type RegistryAuth struct {
	// Server is the registry host ("myregistry.azurecr.io", "host:port");
	// a scheme or path, as in Docker's "https://index.docker.io/v1/", is
	// ignored.
	Server   string
	Username string
	Password string
}

// NormalizeImage returns the full reference of image the way Docker reads
// it: "nginx" is "docker.io/library/nginx:latest".
func NormalizeImage(image string) (string, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %w", image, errdefs.ErrInvalidArgument, err)
	}
	return named.String(), nil
}

// Pull fetches ref and unpacks it for the snapshotter, unless the image is
// present and unpacked already (so a moving tag such as "latest" is fetched
// only once per node). Errors are classified: a repository or tag that does
// not exist is errdefs.ErrNotFound, refused credentials are
// errdefs.ErrUnauthenticated or errdefs.ErrPermissionDenied, and the rest
// (registry down, network) errdefs.ErrUnavailable.
func (r *Runtime) Pull(ctx context.Context, ref string, auth []RegistryAuth) error {
	ctx = r.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return err
	}
	if img, err := r.client.GetImage(ctx, name); err == nil {
		unpacked, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
		if err != nil {
			return fmt.Errorf("image %s: check unpacked: %w", name, err)
		}
		if unpacked {
			return nil
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s: %w", name, err)
	}

	_, err = r.client.Pull(ctx, name,
		client.WithResolver(r.resolver(auth)),
		client.WithPullUnpack,
		client.WithPullSnapshotter(r.opts.Snapshotter),
	)
	if err != nil {
		return fmt.Errorf("pull %s: %w", name, classifyPullError(err))
	}
	return nil
}

// resolver talks to registries with the given credentials, over plain HTTP
// for the insecure ones.
func (r *Runtime) resolver(auth []RegistryAuth) remotes.Resolver {
	creds := func(host string) (string, string, error) {
		for _, a := range auth {
			if sameRegistry(a.Server, host) {
				return a.Username, a.Password, nil
			}
		}
		return "", "", nil
	}
	plain := func(host string) (bool, error) {
		if slices.Contains(r.opts.InsecureRegistries, host) {
			return true, nil
		}
		return docker.MatchLocalhost(host)
	}
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithPlainHTTP(plain),
			docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(creds))),
		),
	})
}

// dockerHubHosts are the names under which Docker Hub is configured and
// reached (the resolver asks for credentials for registry-1.docker.io).
var dockerHubHosts = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}

// sameRegistry reports whether the configured server names host.
func sameRegistry(server, host string) bool {
	s := registryHost(server)
	if s == host {
		return true
	}
	return slices.Contains(dockerHubHosts, s) && slices.Contains(dockerHubHosts, host)
}

// registryHost strips a scheme and path: "https://index.docker.io/v1/" is
// "index.docker.io".
func registryHost(server string) string {
	s := strings.TrimSpace(server)
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			return u.Host
		}
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	return s
}

// classifyPullError gives a pull error its errdefs class. Errors already
// classified by containerd (a missing manifest is ErrNotFound) and context
// errors keep theirs.
func classifyPullError(err error) error {
	var status remoteerrors.ErrUnexpectedStatus
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
	case errors.As(err, &status):
		switch status.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case http.StatusForbidden:
			return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		case http.StatusTooManyRequests:
			return fmt.Errorf("%w: %w", errdefs.ErrResourceExhausted, err)
		}
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	case errdefs.IsNotFound(err), errdefs.IsUnauthorized(err), errdefs.IsPermissionDenied(err),
		errdefs.IsInvalidArgument(err), errdefs.IsUnavailable(err), errdefs.IsNotImplemented(err):
		return err
	}
	return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
}
