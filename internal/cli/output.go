package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jmespath/go-jmespath"
	"sigs.k8s.io/yaml"
)

// Output formats, as az names them.
const (
	formatJSON  = "json"
	formatJSONC = "jsonc"
	formatYAML  = "yaml"
	formatTable = "table"
	formatTSV   = "tsv"
	formatNone  = "none"
)

var outputFormats = []string{formatJSON, formatJSONC, formatYAML, formatTable, formatTSV, formatNone}

// outputOptions are the flags every command that prints a result takes.
type outputOptions struct {
	Format string
	Query  string
}

func (o outputOptions) validate() error {
	if !slices.Contains(outputFormats, o.Format) {
		return usagef("--output/-o: invalid choice %q (choose from %s)", o.Format, strings.Join(outputFormats, ", "))
	}
	if o.Query != "" {
		if _, err := jmespath.Compile(o.Query); err != nil {
			return usagef("--query: invalid JMESPath query %q: %v", o.Query, err)
		}
	}
	return nil
}

// tableTransform turns a result into the rows az's table output shows for
// it; used only when no --query is given, as az does.
type tableTransform func(v any) any

// writeResult prints v (any JSON-encodable value) in the chosen format,
// after applying the query. Values are normalised to generic JSON first so
// that every format and the query see the same thing the API sent.
func writeResult(w io.Writer, v any, o outputOptions, transform tableTransform) error {
	data, err := toGeneric(v)
	if err != nil {
		return err
	}
	addResourceGroups(data)
	if o.Query != "" {
		if data, err = jmespath.Search(o.Query, data); err != nil {
			return usagef("--query: %v", err)
		}
	} else if o.Format == formatTable && transform != nil {
		data = transform(data)
	}
	var out []byte
	switch o.Format {
	case formatNone:
		return nil
	case formatJSON, "":
		out, err = marshalJSON(data)
	case formatJSONC:
		out, err = marshalJSON(data)
		out = colorizeJSON(out)
	case formatYAML:
		out, err = marshalYAML(data)
	case formatTable:
		out = []byte(formatTableText(data))
	case formatTSV:
		out = []byte(formatTSVText(data))
	default:
		return usagef("--output/-o: invalid choice %q", o.Format)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// toGeneric turns v into maps, slices and scalars through JSON.
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	return out, nil
}

var resourceGroupInID = regexp.MustCompile(`(?i)/resourcegroups/([^/]+)`)

// addResourceGroups adds "resourceGroup", taken from "id", to every
// top-level object (or objects of a top-level list), as az does: it is what
// --query and the table's ResourceGroup column use.
func addResourceGroups(data any) {
	add := func(m map[string]any) {
		id, _ := m["id"].(string)
		if _, has := m["resourceGroup"]; has || id == "" {
			return
		}
		if sm := resourceGroupInID.FindStringSubmatch(id); sm != nil {
			m["resourceGroup"] = sm[1]
		}
	}
	switch d := data.(type) {
	case map[string]any:
		add(d)
	case []any:
		for _, e := range d {
			if m, ok := e.(map[string]any); ok {
				add(m)
			}
		}
	}
}

// marshalJSON is az's json output: two-space indent, keys sorted, no HTML
// escaping, a final newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// marshalYAML is az's yaml output: block style, keys sorted.
func marshalYAML(v any) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return b, nil
}

// scalarText renders a scalar the way az (Python's str) does: True/False,
// whole floats without a fraction, null as empty.
func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func isCollection(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

// tableSkipKeys are the keys az's automatic table leaves out.
var tableSkipKeys = map[string]bool{"id": true, "type": true, "etag": true}

// formatTableText renders data as az's table: one row per object, the
// scalar fields as columns (capitalised, keys sorted), a dashed rule under
// the header, columns two spaces apart. A scalar or a list of scalars
// becomes a single "Result" column.
func formatTableText(data any) string {
	var items []any
	switch d := data.(type) {
	case nil:
		return ""
	case []any:
		items = d
	default:
		items = []any{d}
	}
	var cols []string
	seen := map[string]bool{}
	var rows []map[string]string
	for _, it := range items {
		row := map[string]string{}
		m, ok := it.(map[string]any)
		if !ok {
			if !seen["Result"] {
				seen["Result"] = true
				cols = append(cols, "Result")
			}
			row["Result"] = scalarText(it)
			rows = append(rows, row)
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		if _, ordered := m[orderKey]; ordered {
			keys = m[orderKey].([]string)
		} else {
			slices.Sort(keys)
		}
		for _, k := range keys {
			v := m[k]
			if tableSkipKeys[k] || v == nil || isCollection(v) {
				continue
			}
			col := capitalize(k)
			if !seen[col] {
				seen[col] = true
				cols = append(cols, col)
			}
			row[col] = scalarText(v)
		}
		rows = append(rows, row)
	}
	if len(cols) == 0 {
		return ""
	}
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = len(c)
		for _, r := range rows {
			width[i] = max(width[i], len(r[c]))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		var l strings.Builder
		for i, c := range cells {
			if i > 0 {
				l.WriteString("  ")
			}
			l.WriteString(c + strings.Repeat(" ", width[i]-len(c)))
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(cols)
	rule := make([]string, len(cols))
	for i := range cols {
		rule[i] = strings.Repeat("-", width[i])
	}
	line(rule)
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = r[c]
		}
		line(cells)
	}
	return b.String()
}

// orderKey marks a transformed table row whose column order is fixed: its
// value lists the keys in order. JSON output never sees it.
const orderKey = "\x00order"

// orderedRow builds a table row with a fixed column order.
func orderedRow(kv ...string) map[string]any {
	m := map[string]any{}
	var order []string
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
		order = append(order, kv[i])
	}
	m[orderKey] = order
	return m
}

func capitalize(s string) string {
	if s == "" || !('a' <= s[0] && s[0] <= 'z') {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// formatTSVText renders data as az's tsv: one line per item; an object's
// values in key order, tab-separated, with lists shown by their length and
// objects as empty fields, so that columns stay aligned.
func formatTSVText(data any) string {
	var items []any
	if l, ok := data.([]any); ok {
		items = l
	} else {
		items = []any{data}
	}
	cell := func(v any) string {
		switch x := v.(type) {
		case []any:
			return strconv.Itoa(len(x))
		case map[string]any:
			return ""
		default:
			return scalarText(x)
		}
	}
	var b strings.Builder
	for _, it := range items {
		var cells []string
		switch x := it.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				if k != orderKey {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				cells = append(cells, cell(x[k]))
			}
		case []any:
			for _, v := range x {
				cells = append(cells, cell(v))
			}
		default:
			cells = append(cells, cell(x))
		}
		b.WriteString(strings.Join(cells, "\t") + "\n")
	}
	return b.String()
}

// ANSI colours of jsonc, as az's pygments theme roughly has them.
const (
	colorKey    = "\x1b[94m"
	colorString = "\x1b[32m"
	colorNumber = "\x1b[36m"
	colorLit    = "\x1b[95m"
	colorReset  = "\x1b[0m"
)

// colorizeJSON adds ANSI colours to indented JSON: keys, strings, numbers
// and literals (true, false, null) each get their own.
func colorizeJSON(in []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(in); {
		c := in[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(in) && in[j] != '"' {
				if in[j] == '\\' {
					j++
				}
				j++
			}
			j++ // closing quote
			k := j
			for k < len(in) && (in[k] == ' ') {
				k++
			}
			color := colorString
			if k < len(in) && in[k] == ':' {
				color = colorKey
			}
			out.WriteString(color)
			out.Write(in[i:j])
			out.WriteString(colorReset)
			i = j
		case c == '-' || ('0' <= c && c <= '9'):
			j := i
			for j < len(in) && strings.IndexByte("+-.eE0123456789", in[j]) >= 0 {
				j++
			}
			out.WriteString(colorNumber)
			out.Write(in[i:j])
			out.WriteString(colorReset)
			i = j
		case c == 't' || c == 'f' || c == 'n':
			j := i
			for j < len(in) && 'a' <= in[j] && in[j] <= 'z' {
				j++
			}
			out.WriteString(colorLit)
			out.Write(in[i:j])
			out.WriteString(colorReset)
			i = j
		default:
			out.WriteByte(c)
			i++
		}
	}
	return out.Bytes()
}
