// Command hello is the tiny HTTP server of Berth's test image
// berth/hello:1. It listens on :80 (or :$PORT), answers GET / with a
// greeting and its hostname, and logs each request to stdout so that tests
// can check container logs. With UDP_ECHO set to a comma-separated list of
// ports, it also sends every UDP datagram on those ports back to its
// sender, for tests of UDP filtering.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "hello: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	addr := ":" + port
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}

	srv := &http.Server{
		Addr:              addr,
		Handler:           newHandler(hostname, os.Stdout),
		ReadHeaderTimeout: 10 * time.Second,
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	for _, p := range strings.Split(os.Getenv("UDP_ECHO"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pc, err := net.ListenPacket("udp", ":"+p)
		if err != nil {
			return fmt.Errorf("listen on udp :%s: %w", p, err)
		}
		defer pc.Close()
		go echo(pc)
		fmt.Printf("hello: echoing udp on :%s\n", p)
	}
	// Tests wait for this line in the container log.
	fmt.Printf("hello: listening on %s\n", addr)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Println("hello: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newHandler answers GET / with the greeting and hostname, and writes one
// line per request (method, path, protocol, remote address) to log.
func newHandler(hostname string, log io.Writer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from Berth\nhostname: %s\n", hostname)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(log, "hello: %s %s %s from %s\n", r.Method, r.URL.RequestURI(), r.Proto, r.RemoteAddr)
		mux.ServeHTTP(w, r)
	})
}

// echo sends every datagram back until pc is closed.
func echo(pc net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
