package cli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/client"
)

// TestNodeAPIFailover checks that the admin commands' client moves to the
// next endpoint when one cannot be reached, with its body, and not when a
// server answered.
func TestNodeAPIFailover(t *testing.T) {
	// closed returns the URL of a closed listener: dialing it is refused.
	closed := func() string {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		srv.Close()
		return srv.URL
	}
	down, down2 := closed(), closed()

	var okHits, failHits atomic.Int32
	ok := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		okHits.Add(1)
		var body map[string]string
		if r.Body != nil {
			json.NewDecoder(r.Body).Decode(&body)
		}
		if r.URL.Path != "/berth/v1/jointokens" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"id": "abc123", "description": body["description"]})
	}))
	t.Cleanup(ok.Close)
	fail := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		failHits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":{"code":"InternalServerError","message":"boom"}}`))
	}))
	t.Cleanup(fail.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ok.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name             string
		endpoints        []string
		wantOK, wantFail int32
		wantErr          string
	}{
		{"first down", []string{down, ok.URL}, 1, 0, ""},
		{"first answers 500", []string{fail.URL, ok.URL}, 0, 1, "boom"},
		{"all down", []string{down, down2}, 0, 0, "no endpoint could be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			okHits.Store(0)
			failHits.Store(0)
			cfg := &client.Config{Endpoint: tt.endpoints[0], Endpoints: tt.endpoints[1:], CAFile: caFile, Token: "tok"}
			api, err := newNodeAPI(cfg, "config.json")
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]string
			_, err = api.call(context.Background(), http.MethodPost, "jointokens", map[string]string{"description": "rack-4"}, &out)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("call: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("call: %v, want an error with %q", err, tt.wantErr)
			case tt.wantErr == "" && out["description"] != "rack-4":
				t.Errorf("answer %v, want the body echoed", out)
			}
			if okHits.Load() != tt.wantOK || failHits.Load() != tt.wantFail {
				t.Errorf("requests: %d on the good server, %d on the failing one; want %d, %d", okHits.Load(), failHits.Load(), tt.wantOK, tt.wantFail)
			}
		})
	}
}
