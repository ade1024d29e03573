package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// What benchmark reports say of the run and write into the docs.

// ReplaceGenerated replaces what lies between the begin and end markers
// of the file at path with a newline and body; a file without both
// markers, in that order, is left alone and refused.
func ReplaceGenerated(path, begin, end, body string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(doc, []byte(begin))
	j := bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s lacks the markers %q and %q", path, begin, end)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.WriteString("\n" + body)
	out.Write(doc[j:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// SourceCommit is `git describe --always --dirty` of the working directory,
// "unknown" outside a checkout.
func SourceCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// CPUModel is the machine's CPU model name from /proc/cpuinfo.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
