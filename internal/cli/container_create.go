package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/google/shlex"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/client"
)

// Names az gives the volumes it makes from flags.
const (
	secretsVolumeName = "secrets-volume"
	gitRepoVolumeName = "gitrepo-volume"
)

// createOptions are the flags of 'berth container create', az's names.
type createOptions struct {
	Global           globalOptions
	ResourceGroup    string
	Name             string
	Image            string
	Location         string
	CPU              float64
	Memory           float64
	Ports            []int
	Protocol         string
	IPAddress        string
	DNSNameLabel     string
	EnvVars          []string
	SecureEnvVars    []string
	CommandLine      string
	RestartPolicy    string
	OSType           string
	RegistryServer   string
	RegistryUsername string
	RegistryPassword string
	Subnet           string
	VNet             string
	GitRepoURL       string
	GitRepoDir       string
	GitRepoRevision  string
	GitRepoMount     string
	Secrets          []string
	SecretsMount     string
	NoWait           bool
	File             string
	// Progress receives state changes and events while waiting; nil for none.
	Progress io.Writer
}

func newContainerCreateCommand() *cobra.Command {
	o := createOptions{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a container group with one container, or from a YAML file",
		Long: `Create a container group, as 'az container create' does: either one container
described by flags, or any group from a YAML file in ACI's deployment format
(--file; 'berth container export' writes one).

The command waits until the group is provisioned (unless --no-wait), showing
progress on stderr when it is a terminal, and prints the group. A failed
deployment is reported as az reports it, e.g. "(InaccessibleImage) ...", with
exit status 1.`,
		Example: `  berth container create -g demo -n hello --image registry.local/hello:1 --ports 80 --ip-address Public
  berth container create -g demo -n job --image busybox --restart-policy Never \
      --command-line "/bin/sh -c 'echo hi; sleep 5'" --environment-variables A=1 B=2
  berth container create -g demo --file group.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f, ok := cmd.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				o.Progress = f
			}
			return runCreate(cmd.Context(), o, cmd.Flags().Changed, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ResourceGroup, "resource-group", "g", "", "name of the resource group (default: the configured default group)")
	f.StringVarP(&o.Name, "name", "n", "", "name of the container group; also the name of its container")
	f.StringVar(&o.Image, "image", "", "the container image, e.g. registry.local:5000/app:1")
	f.StringVarP(&o.Location, "location", "l", "", "location (default: the resource group's)")
	f.Float64Var(&o.CPU, "cpu", 1, "number of CPU cores, fractions allowed")
	f.Float64Var(&o.Memory, "memory", 1.5, "memory in GB, fractions allowed")
	f.IntSliceVar(&o.Ports, "ports", []int{80}, "space-separated ports to open")
	f.StringVar(&o.Protocol, "protocol", "", "network protocol of the ports: TCP or UDP (default TCP)")
	f.StringVar(&o.IPAddress, "ip-address", "", "IP address type of the group: Public or Private")
	f.StringVar(&o.DNSNameLabel, "dns-name-label", "", "DNS name label of the group's IP (implies --ip-address Public)")
	f.StringArrayVarP(&o.EnvVars, "environment-variables", "e", nil, "space-separated environment variables: KEY=VALUE")
	f.StringArrayVar(&o.SecureEnvVars, "secure-environment-variables", nil, "space-separated secure environment variables (never shown again): KEY=VALUE")
	f.StringVar(&o.CommandLine, "command-line", "", "the command line to run, split with shell rules; replaces the image's entrypoint and command")
	f.StringVar(&o.RestartPolicy, "restart-policy", "Always", "restart policy: Always, OnFailure or Never")
	f.StringVar(&o.OSType, "os-type", "Linux", "OS type of the containers: Linux or Windows")
	f.StringVar(&o.RegistryServer, "registry-login-server", "", "the image registry's login server (default: the image's registry)")
	f.StringVar(&o.RegistryUsername, "registry-username", "", "username for the image registry")
	f.StringVar(&o.RegistryPassword, "registry-password", "", "password for the image registry")
	f.StringVar(&o.Subnet, "subnet", "", "name or resource id of the subnet to join (with --vnet for a name); makes the IP Private")
	f.StringVar(&o.VNet, "vnet", "", "name or resource id of the subnet's virtual network")
	f.StringVar(&o.GitRepoURL, "gitrepo-url", "", "URL of a git repository to clone into a volume")
	f.StringVar(&o.GitRepoDir, "gitrepo-dir", ".", "directory in the volume to clone into")
	f.StringVar(&o.GitRepoRevision, "gitrepo-revision", "", "commit hash to check out")
	f.StringVar(&o.GitRepoMount, "gitrepo-mount-path", "", "path in the container where the git repository volume is mounted")
	f.StringArrayVar(&o.Secrets, "secrets", nil, "space-separated secrets, each a file in the secrets volume: NAME=VALUE")
	f.StringVar(&o.SecretsMount, "secrets-mount-path", "", "path in the container where the secrets volume is mounted")
	f.BoolVar(&o.NoWait, "no-wait", false, "do not wait for the group to be provisioned, and print nothing")
	f.StringVarP(&o.File, "file", "f", "", "YAML file in ACI's deployment format describing the whole group")
	addGlobalFlags(f, &o.Global)
	return cmd
}

// runCreate builds the group from flags or the file, PUTs it and waits.
// changed reports whether a flag was given (a file excludes the flags that
// describe the group, as in az).
func runCreate(ctx context.Context, o createOptions, changed func(string) bool, w io.Writer) error {
	var body any
	name := o.Name
	if o.File != "" {
		for _, fl := range groupFlags {
			if changed(fl) {
				return usagef("--%s cannot be used with --file: the file describes the group", fl)
			}
		}
		fb, err := os.ReadFile(o.File)
		if err != nil {
			return usagef("--file: %v", err)
		}
		var fileName string
		body, fileName, err = groupFromYAML(fb, o.Location)
		if err != nil {
			return usagef("--file %s: %v", o.File, err)
		}
		switch {
		case name == "" && fileName == "":
			return usagef("the --name/-n argument or the file's 'name' is required")
		case name == "":
			name = fileName
		case fileName != "" && fileName != name:
			return usagef("the --name/-n value %q and the name %q in the file do not match", name, fileName)
		}
	} else {
		if err := requireFlag("--name/-n", o.Name); err != nil {
			return err
		}
		if err := requireFlag("--image", o.Image); err != nil {
			return err
		}
	}
	s, err := connect(&o.Global)
	if err != nil {
		return err
	}
	rg, err := s.resourceGroup(o.ResourceGroup)
	if err != nil {
		return err
	}
	ref := client.GroupRef{Subscription: s.sub, ResourceGroup: rg, Name: name}
	if body == nil {
		loc := o.Location
		if loc == "" {
			g, err := s.client.GetResourceGroup(ctx, s.sub, rg)
			if err != nil {
				return err
			}
			loc = g.Location
		}
		req, err := buildGroup(o, s.sub, rg, loc)
		if err != nil {
			return err
		}
		body = req
	} else if m := body.(map[string]any); m["location"] == nil {
		g, err := s.client.GetResourceGroup(ctx, s.sub, rg)
		if err != nil {
			return err
		}
		m["location"] = g.Location
	}
	return createAndWait(ctx, s.client, ref, body, o.NoWait, o.Progress, o.Global.Output, w)
}

// groupFlags are the create flags that describe the group; --file
// excludes them.
var groupFlags = []string{"image", "cpu", "memory", "ports", "protocol", "ip-address", "dns-name-label",
	"environment-variables", "secure-environment-variables", "command-line", "restart-policy", "os-type",
	"registry-login-server", "registry-username", "registry-password", "subnet", "vnet",
	"gitrepo-url", "gitrepo-dir", "gitrepo-revision", "gitrepo-mount-path", "secrets", "secrets-mount-path"}

// createAndWait PUTs body, waits for the operation unless noWait, and
// prints the resulting group.
func createAndWait(ctx context.Context, c *client.Client, ref client.GroupRef, body any, noWait bool, progress io.Writer, out outputOptions, w io.Writer) error {
	_, op, err := c.BeginCreateOrUpdate(ctx, ref, body)
	if err != nil {
		return err
	}
	if noWait {
		return nil
	}
	if op != nil {
		var tick func(*armv1.OperationStatus)
		if progress != nil {
			p := newProgress(progress)
			tick = func(*armv1.OperationStatus) {
				if g, err := c.GetContainerGroup(ctx, ref); err == nil {
					p.update(g)
				}
			}
		}
		if _, err := c.Wait(ctx, op, tick); err != nil {
			return err
		}
	}
	g, err := c.GetContainerGroup(ctx, ref)
	if err != nil {
		return err
	}
	return writeResult(w, g, out, containerGroupTable)
}

// buildGroup turns create's flags into the PUT body, with az's rules.
func buildGroup(o createOptions, sub, rg, location string) (*client.ContainerGroupRequest, error) {
	osType, err := choice("--os-type", o.OSType, "Linux", "Windows")
	if err != nil {
		return nil, err
	}
	restart, err := choice("--restart-policy", o.RestartPolicy, "Always", "OnFailure", "Never")
	if err != nil {
		return nil, err
	}
	protocol := "TCP"
	if o.Protocol != "" {
		if protocol, err = choice("--protocol", o.Protocol, "TCP", "UDP"); err != nil {
			return nil, err
		}
	}
	ipType := ""
	if o.IPAddress != "" {
		if ipType, err = choice("--ip-address", o.IPAddress, "Public", "Private"); err != nil {
			return nil, err
		}
	}
	env, err := envVars(o.EnvVars, o.SecureEnvVars)
	if err != nil {
		return nil, err
	}
	var command []string
	if o.CommandLine != "" {
		if command, err = shlex.Split(o.CommandLine); err != nil {
			return nil, usagef("--command-line: %v", err)
		}
	}
	ports := o.Ports
	if len(ports) == 0 {
		ports = []int{80}
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, usagef("--ports: %d is not a port number (1-65535)", p)
		}
	}

	subnetID, err := subnetResourceID(sub, rg, o.VNet, o.Subnet)
	if err != nil {
		return nil, err
	}
	switch {
	case subnetID != "" && (ipType == "Public" || o.DNSNameLabel != ""):
		return nil, usagef("--subnet puts the group on a private network; it cannot be combined with --ip-address Public or --dns-name-label")
	case ipType == "Private" && o.DNSNameLabel != "":
		return nil, usagef("--dns-name-label needs a public IP address; it cannot be combined with --ip-address Private")
	case o.DNSNameLabel != "" || subnetID != "":
		if ipType == "" {
			ipType = map[bool]string{true: "Private", false: "Public"}[subnetID != ""]
		}
	}

	props := &armv1.ContainerProperties{
		Image:                o.Image,
		Command:              command,
		EnvironmentVariables: env,
		Resources: &armv1.ResourceRequirements{Requests: &armv1.ResourceRequests{
			CPU: ptr(o.CPU), MemoryInGB: ptr(o.Memory),
		}},
	}
	req := &client.ContainerGroupRequest{Location: location}
	gp := &req.Properties
	gp.OSType, gp.RestartPolicy = osType, restart
	// As az: the container declares the ports only when the group has an
	// IP to publish them on.
	if ipType != "" {
		ip := &armv1.IPAddress{Type: ipType, DNSNameLabel: o.DNSNameLabel, Ports: []armv1.Port{}}
		for _, p := range ports {
			ip.Ports = append(ip.Ports, armv1.Port{Port: ptr(int32(p)), Protocol: protocol})
			props.Ports = append(props.Ports, armv1.ContainerPort{Port: ptr(int32(p)), Protocol: protocol})
		}
		gp.IPAddress = ip
	}
	if subnetID != "" {
		gp.SubnetIDs = []client.SubnetID{{ID: subnetID}}
	}

	cred, err := registryCredential(o)
	if err != nil {
		return nil, err
	}
	if cred != nil {
		gp.ImageRegistryCredentials = []armv1.ImageRegistryCredential{*cred}
	}

	secrets, err := parseKeyValues("--secrets", o.Secrets, false)
	if err != nil {
		return nil, err
	}
	switch {
	case len(secrets) > 0 && o.SecretsMount == "":
		return nil, usagef("--secrets needs --secrets-mount-path: give both to mount the secrets")
	case len(secrets) == 0 && o.SecretsMount != "":
		return nil, usagef("--secrets-mount-path needs --secrets NAME=VALUE ...")
	case len(secrets) > 0:
		enc := map[string]string{}
		for k, v := range secrets {
			enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
		}
		gp.Volumes = append(gp.Volumes, armv1.Volume{Name: secretsVolumeName, Secret: enc})
		props.VolumeMounts = append(props.VolumeMounts, armv1.VolumeMount{Name: secretsVolumeName, MountPath: o.SecretsMount})
	}
	switch {
	case o.GitRepoURL != "" && o.GitRepoMount == "":
		return nil, usagef("--gitrepo-url needs --gitrepo-mount-path: give both to mount the repository")
	case o.GitRepoURL == "" && o.GitRepoMount != "":
		return nil, usagef("--gitrepo-mount-path needs --gitrepo-url")
	case o.GitRepoURL != "":
		gp.Volumes = append(gp.Volumes, armv1.Volume{Name: gitRepoVolumeName, GitRepo: &armv1.GitRepoVolume{
			Repository: o.GitRepoURL, Directory: o.GitRepoDir, Revision: o.GitRepoRevision,
		}})
		props.VolumeMounts = append(props.VolumeMounts, armv1.VolumeMount{Name: gitRepoVolumeName, MountPath: o.GitRepoMount})
	}
	gp.Containers = []armv1.Container{{Name: o.Name, Properties: props}}
	return req, nil
}

// choice matches value against the allowed ones without regard to case
// and returns the canonical spelling.
func choice(flag, value string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(a, value) {
			return a, nil
		}
	}
	return "", usagef("%s: invalid choice %q (choose from %s)", flag, value, strings.Join(allowed, ", "))
}

// envVars merges plain and secure KEY=VALUE words, sorted by name so the
// body does not depend on map order; a name given twice is refused.
func envVars(plain, secure []string) ([]armv1.EnvironmentVariable, error) {
	p, err := parseKeyValues("--environment-variables", plain, false)
	if err != nil {
		return nil, err
	}
	s, err := parseKeyValues("--secure-environment-variables", secure, false)
	if err != nil {
		return nil, err
	}
	out := []armv1.EnvironmentVariable{}
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, armv1.EnvironmentVariable{Name: k, Value: ptr(p[k])})
	}
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if _, dup := p[k]; dup {
			return nil, usagef("environment variable %q is given both as plain and as secure", k)
		}
		out = append(out, armv1.EnvironmentVariable{Name: k, SecureValue: ptr(s[k])})
	}
	return out, nil
}

// registryCredential applies az's rules: a username and password need a
// server, which defaults to the image's registry host; a server needs both.
func registryCredential(o createOptions) (*armv1.ImageRegistryCredential, error) {
	if o.RegistryServer == "" && o.RegistryUsername == "" && o.RegistryPassword == "" {
		return nil, nil
	}
	if o.RegistryUsername == "" || o.RegistryPassword == "" {
		return nil, usagef("give --registry-username and --registry-password to use a private image registry")
	}
	server := o.RegistryServer
	if server == "" {
		server = imageRegistry(o.Image)
	}
	if server == "" {
		return nil, usagef("--registry-login-server is required: the image %q names no registry", o.Image)
	}
	return &armv1.ImageRegistryCredential{Server: server, Username: o.RegistryUsername, Password: o.RegistryPassword}, nil
}

// imageRegistry returns the registry host of an image reference, or ""
// for Docker Hub short names ("nginx", "library/nginx").
func imageRegistry(image string) string {
	host, _, ok := strings.Cut(image, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return ""
	}
	return host
}

// subnetResourceID builds the subnet's ARM id from --vnet and --subnet
// (names in the group's resource group, or ids).
func subnetResourceID(sub, rg, vnet, subnet string) (string, error) {
	switch {
	case subnet == "" && vnet == "":
		return "", nil
	case subnet == "":
		return "", usagef("--vnet needs --subnet")
	case strings.HasPrefix(strings.ToLower(subnet), "/subscriptions/"):
		return subnet, nil
	case vnet == "":
		return "", usagef("--subnet %q is a name, so --vnet is required (or give the subnet's resource id)", subnet)
	case strings.HasPrefix(strings.ToLower(vnet), "/subscriptions/"):
		return strings.TrimRight(vnet, "/") + "/subnets/" + subnet, nil
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s/subnets/%s", sub, rg, vnet, subnet), nil
}

func ptr[T any](v T) *T { return &v }
