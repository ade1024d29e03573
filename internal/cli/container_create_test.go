package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func baseCreate() createOptions {
	return createOptions{Name: "web", Image: "reg.local:5000/app:1", CPU: 1, Memory: 1.5, Ports: []int{80},
		RestartPolicy: "Always", OSType: "Linux", GitRepoDir: "."}
}

// TestBuildGroup checks the flag -> body conversion against the JSON az
// would send for the same flags.
func TestBuildGroup(t *testing.T) {
	tests := []struct {
		name   string
		modify func(o *createOptions)
		want   string // the body's JSON
	}{
		{
			name:   "defaults: no IP, so the container declares no ports",
			modify: func(o *createOptions) {},
			want: `{"location":"westus","properties":{"containers":[{"name":"web","properties":{"image":"reg.local:5000/app:1","environmentVariables":[],
				"resources":{"requests":{"cpu":1,"memoryInGB":1.5}}}}],"osType":"Linux","restartPolicy":"Always","initContainers":null}}`,
		},
		{
			name: "public IP with ports, protocol, env, secure env and command line",
			modify: func(o *createOptions) {
				o.IPAddress, o.Ports, o.Protocol = "public", []int{80, 443}, "udp"
				o.EnvVars, o.SecureEnvVars = []string{"B=2", "A=x=y"}, []string{"TOKEN=s3"}
				o.CommandLine = `/bin/sh -c 'echo "hi there"; sleep 1'`
				o.RestartPolicy, o.CPU, o.Memory = "onfailure", 0.5, 0.25
			},
			want: `{"location":"westus","properties":{"containers":[{"name":"web","properties":{"image":"reg.local:5000/app:1",
				"command":["/bin/sh","-c","echo \"hi there\"; sleep 1"],
				"ports":[{"port":80,"protocol":"UDP"},{"port":443,"protocol":"UDP"}],
				"environmentVariables":[{"name":"A","value":"x=y"},{"name":"B","value":"2"},{"name":"TOKEN","secureValue":"s3"}],
				"resources":{"requests":{"cpu":0.5,"memoryInGB":0.25}}}}],"osType":"Linux","restartPolicy":"OnFailure",
				"ipAddress":{"ports":[{"port":80,"protocol":"UDP"},{"port":443,"protocol":"UDP"}],"type":"Public"},"initContainers":null}}`,
		},
		{
			name:   "a DNS name label implies a public IP",
			modify: func(o *createOptions) { o.DNSNameLabel = "my-app" },
			want: `{"location":"westus","properties":{"containers":[{"name":"web","properties":{"image":"reg.local:5000/app:1",
				"ports":[{"port":80,"protocol":"TCP"}],"environmentVariables":[],"resources":{"requests":{"cpu":1,"memoryInGB":1.5}}}}],
				"osType":"Linux","restartPolicy":"Always","ipAddress":{"ports":[{"port":80,"protocol":"TCP"}],"type":"Public","dnsNameLabel":"my-app"},"initContainers":null}}`,
		},
		{
			name: "subnet by names makes a private IP and a subnet id in the group's resource group",
			modify: func(o *createOptions) {
				o.VNet, o.Subnet = "net", "sub1"
			},
			want: `{"location":"westus","properties":{"containers":[{"name":"web","properties":{"image":"reg.local:5000/app:1",
				"ports":[{"port":80,"protocol":"TCP"}],"environmentVariables":[],"resources":{"requests":{"cpu":1,"memoryInGB":1.5}}}}],
				"osType":"Linux","restartPolicy":"Always","ipAddress":{"ports":[{"port":80,"protocol":"TCP"}],"type":"Private"},"initContainers":null,
				"subnetIds":[{"id":"/subscriptions/S/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/net/subnets/sub1"}]}}`,
		},
		{
			name: "registry credentials default to the image's registry; secrets and git repo become volumes",
			modify: func(o *createOptions) {
				o.RegistryUsername, o.RegistryPassword = "u", "p"
				o.Secrets, o.SecretsMount = []string{"a.txt=hello"}, "/mnt/secrets"
				o.GitRepoURL, o.GitRepoMount, o.GitRepoRevision = "https://example.com/r.git", "/src", "abc"
				o.OSType = "windows"
			},
			want: `{"location":"westus","properties":{"containers":[{"name":"web","properties":{"image":"reg.local:5000/app:1","environmentVariables":[],
				"resources":{"requests":{"cpu":1,"memoryInGB":1.5}},
				"volumeMounts":[{"name":"secrets-volume","mountPath":"/mnt/secrets"},{"name":"gitrepo-volume","mountPath":"/src"}]}}],
				"osType":"Windows","restartPolicy":"Always","initContainers":null,
				"imageRegistryCredentials":[{"server":"reg.local:5000","username":"u","password":"p"}],
				"volumes":[{"name":"secrets-volume","secret":{"a.txt":"aGVsbG8="}},{"name":"gitrepo-volume","gitRepo":{"directory":".","repository":"https://example.com/r.git","revision":"abc"}}]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseCreate()
			tt.modify(&o)
			req, err := buildGroup(o, "S", "RG", "westus")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(req)
			if want := compact(t, tt.want); string(got) != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// compact strips the whitespace of a JSON literal, keeping its key order
// (the body's order is the struct's, which the literal follows).
func compact(t *testing.T, s string) string {
	t.Helper()
	if !json.Valid([]byte(s)) {
		t.Fatalf("bad want JSON: %s", s)
	}
	return reencodeLike(s)
}

// reencodeLike strips the whitespace of a JSON literal, keeping its order.
func reencodeLike(s string) string {
	var b strings.Builder
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' && (i == 0 || s[i-1] != '\\') {
			inString = !inString
		}
		if !inString && (c == ' ' || c == '\n' || c == '\t') {
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestBuildGroupUsageErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(o *createOptions)
		want   string
	}{
		{"bad os type", func(o *createOptions) { o.OSType = "BSD" }, `--os-type: invalid choice "BSD" (choose from Linux, Windows)`},
		{"bad restart policy", func(o *createOptions) { o.RestartPolicy = "Sometimes" }, "--restart-policy: invalid choice"},
		{"bad protocol", func(o *createOptions) { o.Protocol = "SCTP" }, "--protocol: invalid choice"},
		{"bad ip type", func(o *createOptions) { o.IPAddress = "Both" }, "--ip-address: invalid choice"},
		{"env without =", func(o *createOptions) { o.EnvVars = []string{"A"} }, `--environment-variables: "A" is not in KEY=VALUE format`},
		{"env twice", func(o *createOptions) { o.EnvVars, o.SecureEnvVars = []string{"A=1"}, []string{"A=2"} }, "both as plain and as secure"},
		{"unbalanced quote", func(o *createOptions) { o.CommandLine = `sh -c 'x` }, "--command-line"},
		{"port out of range", func(o *createOptions) { o.Ports = []int{70000} }, "--ports: 70000"},
		{"secrets without mount path", func(o *createOptions) { o.Secrets = []string{"a=b"} }, "--secrets needs --secrets-mount-path"},
		{"mount path without secrets", func(o *createOptions) { o.SecretsMount = "/s" }, "--secrets-mount-path needs --secrets"},
		{"git repo without mount path", func(o *createOptions) { o.GitRepoURL = "https://x/r.git" }, "--gitrepo-url needs --gitrepo-mount-path"},
		{"registry without password", func(o *createOptions) { o.RegistryServer, o.RegistryUsername = "r.io", "u" }, "--registry-username and --registry-password"},
		{"registry login for a Docker Hub image", func(o *createOptions) { o.Image, o.RegistryUsername, o.RegistryPassword = "nginx", "u", "p" }, "--registry-login-server is required"},
		{"subnet name without vnet", func(o *createOptions) { o.Subnet = "s" }, "--vnet is required"},
		{"vnet without subnet", func(o *createOptions) { o.VNet = "v" }, "--vnet needs --subnet"},
		{"subnet with a public IP", func(o *createOptions) { o.VNet, o.Subnet, o.IPAddress = "v", "s", "Public" }, "cannot be combined with --ip-address Public"},
		{"dns label with a private IP", func(o *createOptions) { o.IPAddress, o.DNSNameLabel = "Private", "abcde" }, "--dns-name-label needs a public IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseCreate()
			tt.modify(&o)
			_, err := buildGroup(o, "S", "RG", "westus")
			if _, ok := err.(*usageError); !ok || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
}

func TestImageRegistry(t *testing.T) {
	for image, want := range map[string]string{
		"nginx": "", "library/nginx:1": "", "reg.io/app": "reg.io", "127.0.0.1:5000/a/b:1": "127.0.0.1:5000", "localhost/x": "localhost",
	} {
		if got := imageRegistry(image); got != want {
			t.Errorf("imageRegistry(%q) = %q, want %q", image, got, want)
		}
	}
}
