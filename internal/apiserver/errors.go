package apiserver

import (
	"errors"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/sealing"
)

// Error is an ARM error: an HTTP status plus the code and message that go
// into the {"error": {...}} body. Handlers return it for every failure a
// user can act on; anything else becomes a 500 InternalServerError.
type Error struct {
	Status  int
	Code    string
	Message string
	Target  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func armError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func badRequest(code, message string) *Error {
	return armError(http.StatusBadRequest, code, message)
}

// toARM maps any error to an ARM error, once, at the edge. Typed errors keep
// their code; classified store errors get their HTTP meaning.
func toARM(err error) *Error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errdefs.IsNotFound(err):
		return armError(http.StatusNotFound, "ResourceNotFound", err.Error())
	case errdefs.IsAlreadyExists(err), errdefs.IsConflict(err):
		return armError(http.StatusConflict, "Conflict", err.Error())
	case errdefs.IsInvalidArgument(err):
		return badRequest("InvalidRequestContent", err.Error())
	case errors.Is(err, sealing.ErrKeyUnavailable):
		// The store holds secrets sealed with a key this server lacks: its
		// operator must fix the flag, not the client its request (issue 7).
		return armError(http.StatusInternalServerError, "EncryptionKeyUnavailable", err.Error())
	case errdefs.IsFailedPrecondition(err):
		return armError(http.StatusPreconditionFailed, "PreconditionFailed", err.Error())
	case errdefs.IsPermissionDenied(err):
		return armError(http.StatusForbidden, "AuthorizationFailed", err.Error())
	case errdefs.IsUnauthorized(err):
		return armError(http.StatusUnauthorized, "AuthenticationFailed", err.Error())
	case errdefs.IsUnavailable(err):
		return armError(http.StatusServiceUnavailable, "ServiceUnavailable", err.Error())
	default:
		return armError(http.StatusInternalServerError, "InternalServerError", "The server encountered an internal error; please retry the request.")
	}
}
