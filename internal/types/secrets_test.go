package types

import (
	"errors"
	"slices"
	"testing"
)

// TestMapSecrets: every secret of a group, and nothing else, goes through
// the function, and its result replaces the secret.
func TestMapSecrets(t *testing.T) {
	t.Parallel()
	g := ContainerGroup{Name: "g", Spec: GroupSpec{
		InitContainers: []Container{{Name: "init", Env: []EnvVar{{Name: "A", Value: "s-init", Secure: true}, {Name: "B", Value: "plain-init"}}}},
		Containers: []Container{{Name: "app", Env: []EnvVar{
			{Name: "C", Value: "s-app", Secure: true}, {Name: "D", Value: "plain-app"}, {Name: "E", Secure: true},
		}}},
		Volumes: []Volume{
			{Name: "v", Secret: map[string][]byte{"f1": []byte("s-file1"), "f2": []byte("s-file2"), "empty": {}}},
			{Name: "e", EmptyDir: true},
		},
		Registries: []RegistryCredential{{Server: "r", Username: "plain-user", Password: "s-pw"}, {Server: "anon"}},
	}}
	var seen []string
	err := g.MapSecrets(func(b []byte) ([]byte, error) {
		seen = append(seen, string(b))
		return []byte("sealed(" + string(b) + ")"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen)
	if want := []string{"s-app", "s-file1", "s-file2", "s-init", "s-pw"}; !slices.Equal(seen, want) {
		t.Errorf("mapped %q, want %q", seen, want)
	}
	got := []string{
		g.Spec.InitContainers[0].Env[0].Value, g.Spec.InitContainers[0].Env[1].Value,
		g.Spec.Containers[0].Env[0].Value, g.Spec.Containers[0].Env[1].Value, g.Spec.Containers[0].Env[2].Value,
		string(g.Spec.Volumes[0].Secret["f1"]), string(g.Spec.Volumes[0].Secret["empty"]),
		g.Spec.Registries[0].Username, g.Spec.Registries[0].Password, g.Spec.Registries[1].Password,
	}
	want := []string{"sealed(s-init)", "plain-init", "sealed(s-app)", "plain-app", "", "sealed(s-file1)", "", "plain-user", "sealed(s-pw)", ""}
	if !slices.Equal(got, want) {
		t.Errorf("after the map:\n%q\nwant\n%q", got, want)
	}

	boom := errors.New("boom")
	if err := g.MapSecrets(func([]byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("an error of the function: got %v", err)
	}
}
