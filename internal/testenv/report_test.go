package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReplaceGenerated(t *testing.T) {
	const begin, end = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
	tests := []struct {
		name, doc, want string
		wantErr         bool
	}{
		{
			name: "replaces only what lies between the markers",
			doc:  "intro\n" + begin + "\nold table\n" + end + "\nanalysis\n",
			want: "intro\n" + begin + "\nnew table\n" + end + "\nanalysis\n",
		},
		{
			name:    "a doc without markers is left alone and refused",
			doc:     "intro\nanalysis\n",
			want:    "intro\nanalysis\n",
			wantErr: true,
		},
		{
			name:    "markers out of order are refused",
			doc:     end + "\nx\n" + begin + "\n",
			want:    end + "\nx\n" + begin + "\n",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "benchmarks.md")
			if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			err := ReplaceGenerated(path, begin, end, "new table\n")
			if (err != nil) != tt.wantErr {
				t.Fatalf("ReplaceGenerated error = %v, want error %v", err, tt.wantErr)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("doc = %q, want %q", got, tt.want)
			}
		})
	}
}
