package apiserver

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// volumeNamePattern is ACI's rule for volume names (the container name
// rule): lowercase letters, digits and inner hyphens, 1 to 63 characters.
var volumeNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// gitSchemes are the repository URL schemes a gitRepo volume may use. The
// clone runs on the node as the agent, so local paths, file:// and ssh://
// (which would use the node's own keys) are refused.
var gitSchemes = []string{"https", "http", "git"}

// volumesFromWire validates the group's volumes and converts them; secret
// values are decoded from base64.
func volumesFromWire(group string, in []armv1.Volume) ([]types.Volume, error) {
	var out []types.Volume
	seen := map[string]bool{}
	for _, w := range in {
		if len(w.Name) > 63 || !volumeNamePattern.MatchString(w.Name) {
			return nil, badRequest("InvalidVolumeName",
				fmt.Sprintf("The volume name '%s' in container group '%s' is invalid. The volume name must contain no more than 63 characters and must match the regex '[a-z0-9]([-a-z0-9]*[a-z0-9])?' (e.g. 'my-name').", w.Name, group))
		}
		if seen[w.Name] {
			return nil, badRequest("DuplicateVolumeName",
				fmt.Sprintf("The volume name '%s' is used more than once in container group '%s'.", w.Name, group))
		}
		seen[w.Name] = true
		kinds := 0
		for _, set := range []bool{w.AzureFile != nil, w.EmptyDir != nil, w.Secret != nil, w.GitRepo != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return nil, badRequest("InvalidVolume",
				fmt.Sprintf("The volume '%s' in container group '%s' must have exactly one of 'azureFile', 'emptyDir', 'secret' or 'gitRepo'; it has %d.", w.Name, group, kinds))
		}
		v := types.Volume{Name: w.Name}
		switch {
		case w.AzureFile != nil:
			return nil, badRequest("AzureFileVolumeNotSupported",
				fmt.Sprintf("The volume '%s' in container group '%s' is an Azure Files share, which Berth does not support: it cannot reach Azure Storage. Use an emptyDir, secret or gitRepo volume.", w.Name, group))
		case w.EmptyDir != nil:
			v.EmptyDir = true
		case w.Secret != nil:
			secret, err := secretFromWire(group, w.Name, w.Secret)
			if err != nil {
				return nil, err
			}
			v.Secret = secret
		case w.GitRepo != nil:
			repo, err := gitRepoFromWire(group, w.Name, w.GitRepo)
			if err != nil {
				return nil, err
			}
			v.GitRepo = repo
		}
		out = append(out, v)
	}
	return out, nil
}

func secretFromWire(group, volume string, in map[string]string) (map[string][]byte, error) {
	if len(in) == 0 {
		// An empty secret is stored as no kind at all; ACI returns secret
		// volumes as {}, so this is also a GET body sent back unchanged.
		return nil, badRequest("InvalidSecretVolume",
			fmt.Sprintf("The secret volume '%s' in container group '%s' has no files: secret values are never returned, so they must be given again on every PUT.", volume, group))
	}
	out := make(map[string][]byte, len(in))
	for name, value := range in {
		// Each key becomes a file directly in the volume.
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return nil, badRequest("InvalidSecretVolume",
				fmt.Sprintf("The secret volume '%s' in container group '%s' has an invalid file name '%s': a name must not be empty, '.' or '..', nor contain '/'.", volume, group, name))
		}
		b, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, badRequest("InvalidSecretVolume",
				fmt.Sprintf("The value of '%s' in secret volume '%s' of container group '%s' is not valid base64.", name, volume, group))
		}
		out[name] = b
	}
	return out, nil
}

func gitRepoFromWire(group, volume string, in *armv1.GitRepoVolume) (*types.GitRepoVolume, error) {
	bad := func(why string) error {
		return badRequest("InvalidGitRepoVolume",
			fmt.Sprintf("The gitRepo volume '%s' in container group '%s' is invalid: %s", volume, group, why))
	}
	repo := strings.TrimSpace(in.Repository)
	if repo == "" {
		return nil, bad("the 'repository' property is required.")
	}
	u, err := url.Parse(repo)
	if err != nil || !slices.Contains(gitSchemes, strings.ToLower(u.Scheme)) || u.Host == "" {
		return nil, bad(fmt.Sprintf("the repository '%s' must be a URL with scheme %s.", repo, strings.Join(gitSchemes, ", ")))
	}
	if strings.Contains(in.Directory, "..") || strings.HasPrefix(in.Directory, "/") || strings.ContainsRune(in.Directory, 0) {
		return nil, bad(fmt.Sprintf("the directory '%s' must be a relative path that does not contain or start with '..'.", in.Directory))
	}
	// A revision is given to git checkout, which would read a leading '-'
	// as an option.
	if strings.HasPrefix(in.Revision, "-") || strings.ContainsAny(in.Revision, " \t\n\x00") {
		return nil, bad(fmt.Sprintf("the revision '%s' is not a valid git revision.", in.Revision))
	}
	return &types.GitRepoVolume{Repository: repo, Directory: in.Directory, Revision: in.Revision}, nil
}

// volumeMountsFromWire validates a container's volume mounts against the
// group's volumes.
func volumeMountsFromWire(group, container string, in []armv1.VolumeMount, volumes []types.Volume) ([]types.VolumeMount, error) {
	var out []types.VolumeMount
	paths := map[string]bool{}
	for _, w := range in {
		bad := func(why string) error {
			return badRequest("InvalidVolumeMount",
				fmt.Sprintf("The volume mount '%s' of container '%s' in container group '%s' is invalid: %s", w.Name, container, group, why))
		}
		if !slices.ContainsFunc(volumes, func(v types.Volume) bool { return v.Name == w.Name }) {
			return nil, bad(fmt.Sprintf("the container group has no volume named '%s'.", w.Name))
		}
		if !strings.HasPrefix(w.MountPath, "/") || strings.ContainsAny(w.MountPath, ":\x00") {
			return nil, bad(fmt.Sprintf("the mount path '%s' must be an absolute path and must not contain ':'.", w.MountPath))
		}
		clean := path.Clean(w.MountPath)
		if clean == "/" {
			return nil, bad("a volume cannot be mounted on '/'.")
		}
		if paths[clean] {
			return nil, bad(fmt.Sprintf("the mount path '%s' is used by more than one volume mount of the container.", w.MountPath))
		}
		paths[clean] = true
		m := types.VolumeMount{Name: w.Name, MountPath: w.MountPath}
		if w.ReadOnly != nil {
			m.ReadOnly = *w.ReadOnly
		}
		out = append(out, m)
	}
	return out, nil
}

// registriesFromWire validates the image registry credentials. Identity
// based credentials (managed identities pulling from ACR) need Azure AD
// and are refused.
func registriesFromWire(group string, in []armv1.ImageRegistryCredential) ([]types.RegistryCredential, error) {
	var out []types.RegistryCredential
	for _, w := range in {
		bad := func(why string) error {
			return badRequest("InvalidImageRegistryCredential",
				fmt.Sprintf("The image registry credential for server '%s' in container group '%s' is invalid: %s", w.Server, group, why))
		}
		server := strings.TrimSpace(w.Server)
		switch {
		case server == "":
			return nil, bad("the 'server' property is required.")
		case strings.Contains(server, "://"):
			return nil, bad("the server must be a registry host name (e.g. 'myregistry.azurecr.io') without a scheme.")
		case strings.ContainsAny(server, "/ \t\n"):
			return nil, bad("the server must be a registry host name, optionally with a port, and nothing else.")
		}
		if w.Identity != "" {
			return nil, badRequest("RegistryIdentityNotSupported",
				fmt.Sprintf("The image registry credential for server '%s' in container group '%s' uses a managed identity, which Berth does not support; give a username and password.", w.Server, group))
		}
		if w.Username == "" || w.Password == "" {
			return nil, bad("a 'username' and a 'password' are required.")
		}
		out = append(out, types.RegistryCredential{Server: server, Username: w.Username, Password: w.Password})
	}
	return out, nil
}

// dnsConfigFromWire validates the group's resolver configuration. The
// values end up as lines of resolv.conf, so line breaks are refused.
func dnsConfigFromWire(group string, in *armv1.DNSConfig) (*types.DNSConfig, error) {
	if in == nil {
		return nil, nil
	}
	bad := func(why string) error {
		return badRequest("InvalidDnsConfig", fmt.Sprintf("The dnsConfig of container group '%s' is invalid: %s", group, why))
	}
	if len(in.NameServers) == 0 {
		return nil, bad("'nameServers' must list at least one name server.")
	}
	out := &types.DNSConfig{SearchDomains: strings.TrimSpace(in.SearchDomains), Options: strings.TrimSpace(in.Options)}
	for _, ns := range in.NameServers {
		addr, err := netip.ParseAddr(strings.TrimSpace(ns))
		if err != nil || addr.Zone() != "" {
			return nil, bad(fmt.Sprintf("the name server '%s' is not an IP address.", ns))
		}
		out.NameServers = append(out.NameServers, addr.String())
	}
	if strings.ContainsAny(out.SearchDomains, "\r\n\x00") {
		return nil, bad("'searchDomains' must be one line of space-separated domains.")
	}
	if strings.ContainsAny(out.Options, "\r\n\x00") {
		return nil, bad("'options' must be one line of space-separated options.")
	}
	return out, nil
}

// volumesToWire renders volumes for a response. Secret volumes come back
// as {}: their contents never leave the server, as with ACI.
func volumesToWire(in []types.Volume) []armv1.Volume {
	var out []armv1.Volume
	for _, v := range in {
		w := armv1.Volume{Name: v.Name}
		switch {
		case v.EmptyDir:
			w.EmptyDir = struct{}{}
		case v.Secret != nil:
			w.Secret = map[string]string{}
		case v.GitRepo != nil:
			w.GitRepo = &armv1.GitRepoVolume{Repository: v.GitRepo.Repository, Directory: v.GitRepo.Directory, Revision: v.GitRepo.Revision}
		}
		out = append(out, w)
	}
	return out
}

func volumeMountsToWire(in []types.VolumeMount) []armv1.VolumeMount {
	var out []armv1.VolumeMount
	for _, m := range in {
		w := armv1.VolumeMount{Name: m.Name, MountPath: m.MountPath}
		if m.ReadOnly {
			w.ReadOnly = ptr(true)
		}
		out = append(out, w)
	}
	return out
}

// registriesToWire renders credentials without their passwords.
func registriesToWire(in []types.RegistryCredential) []armv1.ImageRegistryCredential {
	var out []armv1.ImageRegistryCredential
	for _, r := range in {
		out = append(out, armv1.ImageRegistryCredential{Server: r.Server, Username: r.Username})
	}
	return out
}

func dnsConfigToWire(in *types.DNSConfig) *armv1.DNSConfig {
	if in == nil {
		return nil
	}
	return &armv1.DNSConfig{NameServers: slices.Clone(in.NameServers), SearchDomains: in.SearchDomains, Options: in.Options}
}
