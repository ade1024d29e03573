package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	armv1 "github.com/berth-dev/berth/api/v20230501"
)

// APIError is an error the API answered with: ARM's code and message, and
// the HTTP status (200 for a failed long-running operation, as ARM does).
type APIError struct {
	StatusCode int
	Code       string
	Message    string
	Target     string
	Details    []armv1.ErrorBody
}

// Error formats the error the way az prints it: "(Code) Message".
func (e *APIError) Error() string {
	return "(" + e.Code + ") " + e.Message
}

// IsNotFound reports whether err is an API error with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// ErrorCode returns the ARM code of err, or "" when it is no API error.
func ErrorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// apiError builds an APIError from a failed response body. A body that is
// not ARM's envelope still yields an error naming the status.
func apiError(status int, header http.Header, body []byte) *APIError {
	var env armv1.ErrorResponse
	ae := &APIError{StatusCode: status}
	if err := decodeJSON(body, &env); err == nil && env.Error.Code != "" {
		ae.Code, ae.Message, ae.Target, ae.Details = env.Error.Code, env.Error.Message, env.Error.Target, env.Error.Details
		return ae
	}
	ae.Code = header.Get("x-ms-error-code")
	if ae.Code == "" {
		ae.Code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	ae.Message = strings.TrimSpace(string(body))
	if ae.Message == "" {
		ae.Message = fmt.Sprintf("The server answered %d %s.", status, http.StatusText(status))
	}
	return ae
}
