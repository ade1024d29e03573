package apiserver

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	armv1 "github.com/berth-dev/berth/api/v20230501"
	"github.com/berth-dev/berth/internal/types"
)

// wantCode checks that err is an ARM 400 error with code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want ARM error %s", err, code)
	}
	if ae.Status != 400 || ae.Code != code {
		t.Fatalf("got %d %s (%s), want 400 %s", ae.Status, ae.Code, ae.Message, code)
	}
}

func TestVolumesFromWire(t *testing.T) {
	git := func(repo, dir, rev string) armv1.Volume {
		return armv1.Volume{Name: "src", GitRepo: &armv1.GitRepoVolume{Repository: repo, Directory: dir, Revision: rev}}
	}
	tests := []struct {
		name string
		in   []armv1.Volume
		want []types.Volume
		code string
	}{
		{"no volumes", nil, nil, ""},
		{"emptyDir with any object", []armv1.Volume{{Name: "cache", EmptyDir: map[string]any{}}},
			[]types.Volume{{Name: "cache", EmptyDir: true}}, ""},
		{"secret is decoded", []armv1.Volume{{Name: "s", Secret: map[string]string{"a.txt": "aGVsbG8=", "empty": ""}}},
			[]types.Volume{{Name: "s", Secret: map[string][]byte{"a.txt": []byte("hello"), "empty": {}}}}, ""},
		{"gitRepo kept as given", []armv1.Volume{git("https://example.com/r.git", ".", "abc123")},
			[]types.Volume{{Name: "src", GitRepo: &types.GitRepoVolume{Repository: "https://example.com/r.git", Directory: ".", Revision: "abc123"}}}, ""},
		{"git scheme accepted", []armv1.Volume{git("git://127.0.0.1:9418/r.git", "sub/dir", "")},
			[]types.Volume{{Name: "src", GitRepo: &types.GitRepoVolume{Repository: "git://127.0.0.1:9418/r.git", Directory: "sub/dir"}}}, ""},
		{"upper-case name", []armv1.Volume{{Name: "Cache", EmptyDir: map[string]any{}}}, nil, "InvalidVolumeName"},
		{"empty name", []armv1.Volume{{Name: "", EmptyDir: map[string]any{}}}, nil, "InvalidVolumeName"},
		{"name of 64 characters", []armv1.Volume{{Name: strings.Repeat("a", 64), EmptyDir: map[string]any{}}}, nil, "InvalidVolumeName"},
		{"name ending in a hyphen", []armv1.Volume{{Name: "a-", EmptyDir: map[string]any{}}}, nil, "InvalidVolumeName"},
		{"duplicate name", []armv1.Volume{{Name: "a", EmptyDir: map[string]any{}}, {Name: "a", EmptyDir: map[string]any{}}}, nil, "DuplicateVolumeName"},
		{"no kind", []armv1.Volume{{Name: "a"}}, nil, "InvalidVolume"},
		{"two kinds", []armv1.Volume{{Name: "a", EmptyDir: map[string]any{}, Secret: map[string]string{"k": "dg=="}}}, nil, "InvalidVolume"},
		{"azureFile refused", []armv1.Volume{{Name: "a", AzureFile: &armv1.AzureFileVolume{ShareName: "s", StorageAccountName: "acct"}}}, nil, "AzureFileVolumeNotSupported"},
		{"secret not base64", []armv1.Volume{{Name: "s", Secret: map[string]string{"k": "not base64!"}}}, nil, "InvalidSecretVolume"},
		{"secret without files", []armv1.Volume{{Name: "s", Secret: map[string]string{}}}, nil, "InvalidSecretVolume"},
		{"secret file name with a slash", []armv1.Volume{{Name: "s", Secret: map[string]string{"../x": "dg=="}}}, nil, "InvalidSecretVolume"},
		{"secret file name dot-dot", []armv1.Volume{{Name: "s", Secret: map[string]string{"..": "dg=="}}}, nil, "InvalidSecretVolume"},
		{"gitRepo without repository", []armv1.Volume{git("", "", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo local path", []armv1.Volume{git("/etc", "", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo file URL", []armv1.Volume{git("file:///var/lib/berth", "", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo ssh URL", []armv1.Volume{git("ssh://git@example.com/r.git", "", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo directory starting with ..", []armv1.Volume{git("https://example.com/r.git", "../up", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo directory containing ..", []armv1.Volume{git("https://example.com/r.git", "a/../../b", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo absolute directory", []armv1.Volume{git("https://example.com/r.git", "/abs", "")}, nil, "InvalidGitRepoVolume"},
		{"gitRepo revision like an option", []armv1.Volume{git("https://example.com/r.git", "", "--orphan")}, nil, "InvalidGitRepoVolume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := volumesFromWire("grp", tt.in)
			wantCode(t, err, tt.code)
			if tt.code == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestVolumeMountsFromWire(t *testing.T) {
	volumes := []types.Volume{{Name: "cache", EmptyDir: true}, {Name: "s", Secret: map[string][]byte{"k": nil}}}
	yes := true
	tests := []struct {
		name string
		in   []armv1.VolumeMount
		want []types.VolumeMount
		code string
	}{
		{"none", nil, nil, ""},
		{"two volumes, one read-only", []armv1.VolumeMount{{Name: "cache", MountPath: "/cache"}, {Name: "s", MountPath: "/mnt/secret", ReadOnly: &yes}},
			[]types.VolumeMount{{Name: "cache", MountPath: "/cache"}, {Name: "s", MountPath: "/mnt/secret", ReadOnly: true}}, ""},
		{"same volume twice", []armv1.VolumeMount{{Name: "cache", MountPath: "/a"}, {Name: "cache", MountPath: "/b"}},
			[]types.VolumeMount{{Name: "cache", MountPath: "/a"}, {Name: "cache", MountPath: "/b"}}, ""},
		{"unknown volume", []armv1.VolumeMount{{Name: "nope", MountPath: "/x"}}, nil, "InvalidVolumeMount"},
		{"relative path", []armv1.VolumeMount{{Name: "cache", MountPath: "x"}}, nil, "InvalidVolumeMount"},
		{"empty path", []armv1.VolumeMount{{Name: "cache", MountPath: ""}}, nil, "InvalidVolumeMount"},
		{"colon in path", []armv1.VolumeMount{{Name: "cache", MountPath: "/a:b"}}, nil, "InvalidVolumeMount"},
		{"root", []armv1.VolumeMount{{Name: "cache", MountPath: "/."}}, nil, "InvalidVolumeMount"},
		{"duplicate path", []armv1.VolumeMount{{Name: "cache", MountPath: "/a"}, {Name: "s", MountPath: "/a/"}}, nil, "InvalidVolumeMount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := volumeMountsFromWire("grp", "c", tt.in, volumes)
			wantCode(t, err, tt.code)
			if tt.code == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRegistriesFromWire(t *testing.T) {
	tests := []struct {
		name string
		in   []armv1.ImageRegistryCredential
		want []types.RegistryCredential
		code string
	}{
		{"none", nil, nil, ""},
		{"user and password", []armv1.ImageRegistryCredential{{Server: "127.0.0.1:5000", Username: "u", Password: "p"}},
			[]types.RegistryCredential{{Server: "127.0.0.1:5000", Username: "u", Password: "p"}}, ""},
		{"no server", []armv1.ImageRegistryCredential{{Username: "u", Password: "p"}}, nil, "InvalidImageRegistryCredential"},
		{"server with scheme", []armv1.ImageRegistryCredential{{Server: "https://r.example.com", Username: "u", Password: "p"}}, nil, "InvalidImageRegistryCredential"},
		{"server with path", []armv1.ImageRegistryCredential{{Server: "r.example.com/v2", Username: "u", Password: "p"}}, nil, "InvalidImageRegistryCredential"},
		{"no password", []armv1.ImageRegistryCredential{{Server: "r.example.com", Username: "u"}}, nil, "InvalidImageRegistryCredential"},
		{"no username", []armv1.ImageRegistryCredential{{Server: "r.example.com", Password: "p"}}, nil, "InvalidImageRegistryCredential"},
		{"identity refused", []armv1.ImageRegistryCredential{{Server: "r.azurecr.io", Identity: "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"}}, nil, "RegistryIdentityNotSupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := registriesFromWire("grp", tt.in)
			wantCode(t, err, tt.code)
			if tt.code == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDNSConfigFromWire(t *testing.T) {
	tests := []struct {
		name string
		in   *armv1.DNSConfig
		want *types.DNSConfig
		code string
	}{
		{"absent", nil, nil, ""},
		{"full", &armv1.DNSConfig{NameServers: []string{"10.0.0.10", " 2001:db8::1 "}, SearchDomains: "a.example b.example", Options: "ndots:2 timeout:1"},
			&types.DNSConfig{NameServers: []string{"10.0.0.10", "2001:db8::1"}, SearchDomains: "a.example b.example", Options: "ndots:2 timeout:1"}, ""},
		{"no name servers", &armv1.DNSConfig{SearchDomains: "a.example"}, nil, "InvalidDnsConfig"},
		{"host name as server", &armv1.DNSConfig{NameServers: []string{"dns.example"}}, nil, "InvalidDnsConfig"},
		{"line break in search", &armv1.DNSConfig{NameServers: []string{"10.0.0.10"}, SearchDomains: "a\nnameserver 1.2.3.4"}, nil, "InvalidDnsConfig"},
		{"line break in options", &armv1.DNSConfig{NameServers: []string{"10.0.0.10"}, Options: "ndots:1\rx"}, nil, "InvalidDnsConfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dnsConfigFromWire("grp", tt.in)
			wantCode(t, err, tt.code)
			if tt.code == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// TestToWireHidesSecrets checks that what a response renders from stored
// volumes and credentials holds neither secret contents nor passwords, and
// that secret volumes still read as secret volumes ({}), as ACI shows them.
func TestToWireHidesSecrets(t *testing.T) {
	volumes := []types.Volume{
		{Name: "cache", EmptyDir: true},
		{Name: "s", Secret: map[string][]byte{"key": []byte("s3cr3t-value")}},
		{Name: "src", GitRepo: &types.GitRepoVolume{Repository: "https://example.com/r.git", Directory: "d", Revision: "v1"}},
	}
	regs := []types.RegistryCredential{{Server: "r.example.com", Username: "bob", Password: "hunter2-password"}}
	body, err := json.Marshal(map[string]any{
		"volumes":                  volumesToWire(volumes),
		"imageRegistryCredentials": registriesToWire(regs),
		"volumeMounts":             volumeMountsToWire([]types.VolumeMount{{Name: "s", MountPath: "/s", ReadOnly: true}, {Name: "cache", MountPath: "/c"}}),
		"dnsConfig":                dnsConfigToWire(&types.DNSConfig{NameServers: []string{"10.0.0.10"}, Options: "ndots:2"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := string(body)
	for _, secret := range []string{"s3cr3t-value", "czNjcjN0LXZhbHVl", "hunter2-password", `"key"`, "password"} {
		if strings.Contains(got, secret) {
			t.Errorf("response %s contains %q", got, secret)
		}
	}
	for _, want := range []string{
		`{"name":"cache","emptyDir":{}}`,
		`{"name":"s","secret":{}}`,
		`{"name":"src","gitRepo":{"directory":"d","repository":"https://example.com/r.git","revision":"v1"}}`,
		`{"server":"r.example.com","username":"bob"}`,
		`[{"name":"s","mountPath":"/s","readOnly":true},{"name":"cache","mountPath":"/c"}]`,
		`{"nameServers":["10.0.0.10"],"options":"ndots:2"}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("response %s lacks %s", got, want)
		}
	}
	if dnsConfigToWire(nil) != nil {
		t.Error("dnsConfigToWire(nil) is not nil")
	}
}

// TestVolumesRoundTrip checks that a converted spec read back from the
// store (JSON) still renders the same volumes.
func TestVolumesRoundTrip(t *testing.T) {
	in := []armv1.Volume{
		{Name: "cache", EmptyDir: map[string]any{}},
		{Name: "s", Secret: map[string]string{"k": "dg=="}},
		{Name: "src", GitRepo: &armv1.GitRepoVolume{Repository: "git://127.0.0.1/r", Directory: "."}},
	}
	vs, err := volumesFromWire("grp", in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(vs)
	if err != nil {
		t.Fatal(err)
	}
	var stored []types.Volume
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stored, vs) {
		t.Errorf("stored %#v, want %#v", stored, vs)
	}
	out := volumesToWire(stored)
	if len(out) != 3 || out[0].EmptyDir == nil || out[1].Secret == nil || len(out[1].Secret) != 0 || out[2].GitRepo == nil {
		t.Errorf("rendered %#v, want emptyDir, empty secret and gitRepo", out)
	}
}
