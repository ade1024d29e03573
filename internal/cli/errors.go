package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/berth-dev/berth/client"
)

// usageError is a mistake on the command line: the message says what is
// wrong and what is expected, and the exit code is 2, as az's.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Exit codes, as az uses them.
const (
	exitError = 1
	exitUsage = 2
)

// reportError prints err the way az does and returns the exit code:
//
//	ERROR: (Code) Message
//	Code: Code
//	Message: Message
//
// for API errors, and "ERROR: message" plus a pointer to --help for usage
// errors.
func reportError(w io.Writer, cmdPath string, err error) int {
	var ae *client.APIError
	var ue *usageError
	switch {
	case errors.As(err, &ae):
		fmt.Fprintf(w, "ERROR: %s\nCode: %s\nMessage: %s\n", ae.Error(), ae.Code, ae.Message)
		return exitError
	case errors.As(err, &ue):
		fmt.Fprintf(w, "ERROR: %s\nRun '%s --help' for usage.\n", ue.msg, cmdPath)
		return exitUsage
	case errors.Is(err, client.ErrNoConfig):
		fmt.Fprintf(w, "ERROR: %v\nRun 'berth login --config DATA_DIR/client.json' first, or set %s.\n", err, client.ConfigEnv)
		return exitError
	default:
		fmt.Fprintf(w, "ERROR: %v\n", err)
		return exitError
	}
}
