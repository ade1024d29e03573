package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestGroupFromYAML(t *testing.T) {
	file := `apiVersion: 2019-12-01
location: eastus
name: mygroup
type: Microsoft.ContainerInstance/containerGroups
tags: {exampleTag: tutorial}
properties:
  osType: Linux
  containers:
  - name: app
    properties:
      image: app:1
      resources: {requests: {cpu: 1, memoryInGb: 1.5}}
      ports: [{port: 80}]
  ipAddress: {type: Public, ports: [{protocol: tcp, port: '80'}]}
`
	body, name, err := groupFromYAML([]byte(file), "westus")
	if err != nil {
		t.Fatal(err)
	}
	if name != "mygroup" {
		t.Errorf("name %q", name)
	}
	got, _ := json.Marshal(body)
	// apiVersion, name and type stay out of the body; the file's location
	// wins over the flag's; values pass as written.
	want := `{"location":"eastus","properties":{"containers":[{"name":"app","properties":{"image":"app:1","ports":[{"port":80}],"resources":{"requests":{"cpu":1,"memoryInGb":1.5}}}}],"ipAddress":{"ports":[{"port":"80","protocol":"tcp"}],"type":"Public"},"osType":"Linux"},"tags":{"exampleTag":"tutorial"}}`
	if string(got) != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}

	body, _, err = groupFromYAML([]byte("properties:\n  containers: []\n"), "westus")
	if err != nil || body["location"] != "westus" {
		t.Errorf("without a location in the file: %v, %v; want the flag's", body, err)
	}

	for _, tt := range []struct{ file, want string }{
		{"a: [", "not valid YAML"},
		{"- 1\n- 2\n", "must hold a mapping"},
		{"name: x\n", "'properties' is missing"},
		{"properties: {osType: Linux}\n", "'properties.containers' is missing"},
		{"properties: {containers: []}\nspec: {}\n", `unknown top-level key "spec"`},
		{"type: Microsoft.Web/sites\nproperties: {containers: []}\n", "is not Microsoft.ContainerInstance/containerGroups"},
	} {
		if _, _, err := groupFromYAML([]byte(tt.file), ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("groupFromYAML(%q): got %v, want %q", tt.file, err, tt.want)
		}
	}
}

func TestExportYAML(t *testing.T) {
	group := `{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/g", "name": "g",
	  "type": "Microsoft.ContainerInstance/containerGroups", "location": "westus", "tags": {"a": "b"},
	  "properties": {"provisioningState": "Succeeded", "osType": "Linux", "sku": "Standard",
	    "instanceView": {"state": "Running", "events": []},
	    "ipAddress": {"ip": "10.0.0.2", "type": "Public", "ports": [{"port": 80, "protocol": "TCP"}]},
	    "volumes": [{"name": "v", "emptyDir": {}}],
	    "containers": [{"name": "c", "properties": {"image": "i:1", "instanceView": {"restartCount": 0},
	      "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}}]}}`
	b, err := exportYAML(json.RawMessage(group))
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: "2023-05-01"
location: westus
name: g
properties:
  containers:
  - name: c
    properties:
      image: i:1
      resources:
        requests:
          cpu: 1
          memoryInGB: 1.5
  ipAddress:
    ports:
    - port: 80
      protocol: TCP
    type: Public
  osType: Linux
  sku: Standard
  volumes:
  - emptyDir: {}
    name: v
tags:
  a: b
type: Microsoft.ContainerInstance/containerGroups
`
	if string(b) != want {
		t.Errorf("got:\n%s\nwant:\n%s", b, want)
	}
	// The export reads back as the same group.
	body, name, err := groupFromYAML(b, "")
	if err != nil || name != "g" || body["location"] != "westus" {
		t.Errorf("reading the export back: %v %q %v", body["location"], name, err)
	}
}

// TestCommandTree checks that every command and flag is documented and
// that every client command refuses positional arguments.
func TestCommandTree(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if c.Short == "" {
			t.Errorf("%s has no short description", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s --%s has no description", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
	if n < 21 {
		t.Errorf("found %d commands, want at least 21", n)
	}
}
