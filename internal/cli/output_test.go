package cli

import (
	"bytes"
	"strings"
	"testing"
)

// sample is a result shaped like the API's: objects with scalars, nested
// objects and lists.
const sample = `[
 {"id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/web",
  "name": "web", "location": "westus", "tags": {"a": "b"}, "enabled": true, "count": 2, "ratio": 1.5, "nothing": null,
  "properties": {"containers": [{"name": "web"}], "provisioningState": "Succeeded"}},
 {"id": "/subscriptions/s/resourceGroups/rg2/providers/Microsoft.ContainerInstance/containerGroups/db",
  "name": "db", "location": "eastus", "tags": {}, "enabled": false, "count": 10, "ratio": 0.25, "nothing": null,
  "properties": {"containers": [], "provisioningState": "Failed"}}
]`

func render(t *testing.T, format, query string, transform tableTransform) string {
	t.Helper()
	var data any
	data, err := toGeneric(rawJSON(sample))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeResult(&buf, data, outputOptions{Format: format, Query: query}, transform); err != nil {
		t.Fatalf("writeResult(%s, %q): %v", format, query, err)
	}
	return buf.String()
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestWriteResult(t *testing.T) {
	tests := []struct {
		name, format, query string
		transform           tableTransform
		want                string
	}{
		{
			name:   "table has the scalar fields, capitalised and sorted, id and type left out, resourceGroup added",
			format: "table",
			want: "Count  Enabled  Location  Name  Ratio  ResourceGroup\n" +
				"-----  -------  --------  ----  -----  -------------\n" +
				"2      True     westus    web   1.5    rg1\n" +
				"10     False    eastus    db    0.25   rg2\n",
		},
		{
			name:   "table of a query result that is a list of scalars has one Result column",
			format: "table", query: "[].name",
			want: "Result\n------\nweb\ndb\n",
		},
		{
			name:   "table transform fixes the columns",
			format: "table",
			transform: func(v any) any {
				return mapRows(v, func(m map[string]any) any {
					return orderedRow("Name", m["name"].(string), "Where", m["location"].(string))
				})
			},
			want: "Name  Where\n----  ------\nweb   westus\ndb    eastus\n",
		},
		{
			name:   "a query turns the table transform off, as in az",
			format: "table", query: "[0].{n: name}",
			transform: func(any) any { return "transformed" },
			want:      "N\n---\nweb\n",
		},
		{
			name:   "tsv has every value in key order, lists as lengths and objects as empty cells",
			format: "tsv",
			want: "2\tTrue\t/subscriptions/s/resourceGroups/rg1/providers/Microsoft.ContainerInstance/containerGroups/web\twestus\tweb\t\t\t1.5\trg1\t\n" +
				"10\tFalse\t/subscriptions/s/resourceGroups/rg2/providers/Microsoft.ContainerInstance/containerGroups/db\teastus\tdb\t\t\t0.25\trg2\t\n",
		},
		{
			name:   "tsv of a scalar query is the bare value",
			format: "tsv", query: "[1].properties.provisioningState",
			want: "Failed\n",
		},
		{
			name:   "json is indented with sorted keys",
			format: "json", query: "[1].{b: name, a: ratio, c: tags}",
			want: "{\n  \"a\": 0.25,\n  \"b\": \"db\",\n  \"c\": {}\n}\n",
		},
		{
			name:   "yaml is block style with sorted keys",
			format: "yaml", query: "[0].{name: name, props: properties}",
			want: "name: web\nprops:\n  containers:\n  - name: web\n  provisioningState: Succeeded\n",
		},
		{
			name:   "jsonc colours keys, strings, numbers and literals",
			format: "jsonc", query: "[0].{a: name, b: count, c: enabled, d: nothing}",
			want: "{\n  \x1b[94m\"a\"\x1b[0m: \x1b[32m\"web\"\x1b[0m,\n  \x1b[94m\"b\"\x1b[0m: \x1b[36m2\x1b[0m,\n" +
				"  \x1b[94m\"c\"\x1b[0m: \x1b[95mtrue\x1b[0m,\n  \x1b[94m\"d\"\x1b[0m: \x1b[95mnull\x1b[0m\n}\n",
		},
		{
			name:   "query filters with JMESPath",
			format: "json", query: "[?properties.provisioningState=='Succeeded'].name",
			want: "[\n  \"web\"\n]\n",
		},
		{
			name:   "tsv puts each item of a list of scalars on its own line",
			format: "tsv", query: "[].resourceGroup",
			want: "rg1\nrg2\n",
		},
		{
			name:   "none prints nothing",
			format: "none",
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(t, tt.format, tt.query, tt.transform); got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

func TestOutputOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    outputOptions
		want string
	}{
		{"unknown format", outputOptions{Format: "xml"}, `--output/-o: invalid choice "xml"`},
		{"bad query", outputOptions{Format: "json", Query: "[?"}, "--query: invalid JMESPath query"},
		{"good", outputOptions{Format: "tsv", Query: "[].name"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v", err)
				}
				return
			}
			if _, ok := err.(*usageError); !ok || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a usage error with %q", err, tt.want)
			}
		})
	}
}

func TestContainerGroupTable(t *testing.T) {
	g := `{"id": "/subscriptions/s/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroups/app", "name": "app", "location": "westus",
	  "properties": {"provisioningState": "Succeeded", "osType": "Linux",
	    "ipAddress": {"ip": "10.0.0.5", "type": "Public", "ports": [{"port": 80}, {"port": 443}]},
	    "containers": [
	      {"name": "a", "properties": {"image": "web:1", "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}},
	      {"name": "b", "properties": {"image": "side:1", "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.5}}}}]}}`
	var buf bytes.Buffer
	if err := writeResult(&buf, rawJSON(g), outputOptions{Format: "table"}, containerGroupTable); err != nil {
		t.Fatal(err)
	}
	want := "Name  ResourceGroup  Status     Image         IP:ports         Network  CPU/Memory       OsType  Location\n" +
		"----  -------------  ---------  ------------  ---------------  -------  ---------------  ------  --------\n" +
		"app   demo           Succeeded  web:1,side:1  10.0.0.5:80,443  Public   1.5 core/2.0 gb  Linux   westus\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestExpandMultiValueFlags(t *testing.T) {
	tests := []struct{ in, want string }{
		{"container create --ports 80 443 -n x", "container create --ports 80 --ports 443 -n x"},
		{"container create -e A=1 B=2 --environment-variables C=3", "container create -e A=1 -e B=2 --environment-variables C=3"},
		{"configure --defaults group=rg subscription=s", "configure --defaults group=rg --defaults subscription=s"},
		{"container create --secrets a=-x b=y --image i", "container create --secrets a=-x --secrets b=y --image i"},
		{"container create --command-line a b", "container create --command-line a b"},
		{"container create --ports", "container create --ports"},
	}
	for _, tt := range tests {
		if got := strings.Join(expandMultiValueFlags(strings.Fields(tt.in)), " "); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
