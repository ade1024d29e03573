package agent

import "testing"

func TestTailLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"zero returns everything", "a\nb\nc\n", 0, "a\nb\nc\n"},
		{"last line", "a\nb\nc\n", 1, "c\n"},
		{"last two lines", "a\nb\nc\n", 2, "b\nc\n"},
		{"more than there are", "a\nb\n", 5, "a\nb\n"},
		{"unterminated last line counts", "a\nb\nc", 2, "b\nc"},
		{"empty input", "", 3, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tailLines(tt.in, tt.n); got != tt.want {
				t.Errorf("tailLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
