package apiserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/berth-dev/berth/internal/nodeplane"
)

func TestSnapshot(t *testing.T) {
	content := bytes.Repeat([]byte("etcd snapshot "), 10000)
	for _, tc := range []struct {
		name     string
		snapshot func(context.Context, io.Writer) error
		auth     string
		status   int
		code     string
	}{
		{
			name: "the admin gets the whole snapshot",
			snapshot: func(_ context.Context, w io.Writer) error {
				_, err := w.Write(content)
				return err
			},
			auth: testToken, status: http.StatusOK,
		},
		{
			name: "a tenant may not",
			snapshot: func(context.Context, io.Writer) error {
				t.Error("a tenant's request took a snapshot")
				return nil
			},
			auth: tenantToken, status: http.StatusForbidden, code: "AuthorizationFailed",
		},
		{
			name: "a snapshot that fails half way answers an error, not part of it",
			snapshot: func(_ context.Context, w io.Writer) error {
				if _, err := w.Write(content[:1000]); err != nil {
					return err
				}
				return errors.New("etcd went away")
			},
			auth: testToken, status: http.StatusInternalServerError, code: "InternalServerError",
		},
		{
			name: "a server without snapshots says so",
			auth: testToken, status: http.StatusNotImplemented, code: "SnapshotNotSupported",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvOpts(t, func(o *Options) {
				o.Nodes = nodeplane.NewServer(nodeplane.ServerOptions{Store: o.Store})
				o.Snapshot = tc.snapshot
			})
			req, err := http.NewRequest(http.MethodGet, e.srv.URL+nodeAPIPrefix+"cluster/snapshot", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tc.auth)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read the answer: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status != http.StatusOK {
				if got := resp.Header.Get("x-ms-error-code"); got != tc.code {
					t.Errorf("error code = %q (%s), want %q", got, body, tc.code)
				}
				if bytes.Contains(body, content[:100]) {
					t.Error("the error answer carries part of the snapshot")
				}
				return
			}
			if !bytes.Equal(body, content) {
				t.Errorf("got %d bytes, want the %d of the snapshot", len(body), len(content))
			}
			if got, want := resp.Header.Get(SnapshotSHA256Header), fmt.Sprintf("%x", sha256.Sum256(content)); got != want {
				t.Errorf("%s = %q, want %q", SnapshotSHA256Header, got, want)
			}
			if resp.ContentLength != int64(len(content)) || resp.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("Content-Length %d, Content-Type %q; want %d, application/octet-stream", resp.ContentLength, resp.Header.Get("Content-Type"), len(content))
			}
		})
	}
}
