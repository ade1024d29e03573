package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// fileEnvelopeKeys are the top-level keys of a YAML deployment file that
// reach the server; az sends the file through ARM's generic resource API,
// which forwards only the resource envelope (apiVersion, name and type are
// part of the URL there).
var fileEnvelopeKeys = []string{"location", "tags", "identity", "zones", "sku", "properties"}

// knownFileKeys are all the top-level keys the format has.
var knownFileKeys = append([]string{"apiVersion", "name", "type"}, fileEnvelopeKeys...)

// groupFromYAML reads an ACI YAML deployment file and returns the PUT body
// (a generic map, so that every field the file holds reaches the server
// as written) and the file's name. The file's location wins over
// flagLocation, as in az.
func groupFromYAML(b []byte, flagLocation string) (map[string]any, string, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, "", fmt.Errorf("not valid YAML: %w", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil || doc == nil {
		return nil, "", fmt.Errorf("the file must hold a mapping with 'properties' (ACI's YAML deployment format)")
	}
	for k := range doc {
		if !slices.Contains(knownFileKeys, k) {
			return nil, "", fmt.Errorf("unknown top-level key %q (expected %s)", k, strings.Join(knownFileKeys, ", "))
		}
	}
	name, _ := doc["name"].(string)
	if t, ok := doc["type"].(string); ok && !strings.EqualFold(t, armv1.ResourceType) {
		return nil, "", fmt.Errorf("type %q is not %s", t, armv1.ResourceType)
	}
	props, ok := doc["properties"].(map[string]any)
	if !ok {
		return nil, "", fmt.Errorf("'properties' is missing or not a mapping")
	}
	if _, ok := props["containers"].([]any); !ok {
		return nil, "", fmt.Errorf("'properties.containers' is missing or not a list")
	}
	body := map[string]any{}
	for _, k := range fileEnvelopeKeys {
		if v, ok := doc[k]; ok && v != nil {
			body[k] = v
		}
	}
	if body["location"] == nil && flagLocation != "" {
		body["location"] = flagLocation
	}
	return body, name, nil
}

// exportYAML turns a group as the API returns it into a YAML deployment
// file, as 'az container export' does: read-only fields (id, resource
// group, provisioning state, instance views, the assigned IP and FQDN)
// are dropped and apiVersion is added, so that the file creates the same
// group again.
func exportYAML(group json.RawMessage) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(group, &doc); err != nil {
		return nil, fmt.Errorf("decode group: %w", err)
	}
	delete(doc, "id")
	delete(doc, "resourceGroup")
	doc["apiVersion"] = armv1.APIVersion
	if props, ok := doc["properties"].(map[string]any); ok {
		delete(props, "provisioningState")
		delete(props, "instanceView")
		for _, list := range []string{"containers", "initContainers"} {
			cs, _ := props[list].([]any)
			for _, c := range cs {
				if cm, ok := c.(map[string]any); ok {
					if cp, ok := cm["properties"].(map[string]any); ok {
						delete(cp, "instanceView")
					}
				}
			}
		}
		if ip, ok := props["ipAddress"].(map[string]any); ok {
			delete(ip, "ip")
			delete(ip, "fqdn")
		}
	}
	return marshalYAML(doc)
}
