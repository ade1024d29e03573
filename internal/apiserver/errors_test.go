package apiserver

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/sealing"
)

// TestToARM_SealedWithoutKey: a group whose secrets this server cannot
// open is a 500 EncryptionKeyUnavailable that says which key is needed,
// not a precondition failure of the request. (issue 7)
func TestToARM_SealedWithoutKey(t *testing.T) {
	t.Parallel()
	k, err := sealing.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var none *sealing.Key
	_, err = none.Open(k.Seal([]byte("secret"), nil), nil)
	ae := toARM(fmt.Errorf("store: decode %q: %w", "groups/s/rg/g", err))
	if ae.Status != http.StatusInternalServerError || ae.Code != "EncryptionKeyUnavailable" || !strings.Contains(ae.Message, k.ID()) {
		t.Errorf("toARM = %d %s %q, want 500 EncryptionKeyUnavailable naming key %s", ae.Status, ae.Code, ae.Message, k.ID())
	}
}
