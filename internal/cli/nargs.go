package cli

import "strings"

// multiValueFlags take several space-separated values after one flag, as
// az's nargs='+' arguments do ("--ports 80 443", "--environment-variables
// A=1 B=2"). pflag reads one value per flag, so the arguments are rewritten
// before parsing: each extra value gets its own copy of the flag. No berth
// client command takes positional arguments, so a word that follows such a
// flag can only be one of its values.
var multiValueFlags = map[string]bool{
	"--ports":                        true,
	"--environment-variables":        true,
	"-e":                             true,
	"--secure-environment-variables": true,
	"--secrets":                      true,
	"--defaults":                     true,
	"--tags":                         true,
}

// expandMultiValueFlags rewrites "--flag a b c" as "--flag a --flag b --flag c".
func expandMultiValueFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		if !multiValueFlags[a] || i+1 >= len(args) {
			continue
		}
		out = append(out, args[i+1]) // the first value, whatever it looks like
		i++
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			out = append(out, a, args[i+1])
			i++
		}
	}
	return out
}
