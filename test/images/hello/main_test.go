package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "root answers with the greeting and hostname", method: "GET", path: "/", wantStatus: 200, wantBody: "Hello from Berth\nhostname: box1\n"},
		{name: "other paths are not found", method: "GET", path: "/nope", wantStatus: 404},
		{name: "other methods are refused", method: "POST", path: "/", wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			srv := httptest.NewServer(newHandler("box1", &log))
			defer srv.Close()
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("got body %q, want %q", body, tt.wantBody)
			}
			wantLog := "hello: " + tt.method + " " + tt.path + " HTTP/1.1 from 127.0.0.1:"
			if !strings.HasPrefix(log.String(), wantLog) {
				t.Errorf("got log %q, want prefix %q", log.String(), wantLog)
			}
		})
	}
}
