package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a Reconciler that answers from a script per key and records
// when each pass ran.
type recorder struct {
	mu     sync.Mutex
	runs   map[string][]time.Duration
	start  time.Time
	answer func(key string, n int) (Result, error)
}

func (r *recorder) Reconcile(_ context.Context, key string) (Result, error) {
	r.mu.Lock()
	r.runs[key] = append(r.runs[key], time.Since(r.start))
	n := len(r.runs[key])
	r.mu.Unlock()
	return r.answer(key, n)
}

func TestController(t *testing.T) {
	tests := []struct {
		name   string
		answer func(key string, n int) (Result, error)
		want   []time.Duration // when the passes of "k" ran
	}{
		{
			name:   "a pass that succeeds runs once",
			answer: func(string, int) (Result, error) { return Result{}, nil },
			want:   []time.Duration{0},
		},
		{
			name: "a failing key is retried with back-off until it succeeds",
			answer: func(_ string, n int) (Result, error) {
				if n < 4 {
					return Result{}, errors.New("etcd unavailable")
				}
				return Result{}, nil
			},
			want: []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second},
		},
		{
			name: "a terminal error is not retried",
			answer: func(string, int) (Result, error) {
				return Result{}, Terminal(errors.New("bad input"))
			},
			want: []time.Duration{0},
		},
		{
			name: "RequeueAfter runs the key again then",
			answer: func(_ string, n int) (Result, error) {
				if n == 1 {
					return Result{RequeueAfter: 30 * time.Second}, nil
				}
				return Result{}, nil
			},
			want: []time.Duration{0, 30 * time.Second},
		},
		{
			name: "a panic counts as a failure",
			answer: func(_ string, n int) (Result, error) {
				if n == 1 {
					panic("nil map")
				}
				return Result{}, nil
			},
			want: []time.Duration{0, time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{runs: map[string][]time.Duration{}, start: time.Now(), answer: tt.answer}
				c := New("test", r, Options{Workers: 2, Backoff: Backoff{Base: time.Second, Max: time.Minute}})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); c.Run(ctx) }()
				c.Enqueue("k")
				time.Sleep(10 * time.Minute)
				cancel()
				<-done
				c.ShutDown()
				got := r.runs["k"]
				if len(got) != len(tt.want) {
					t.Fatalf("passes at %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Fatalf("passes at %v, want %v", got, tt.want)
					}
				}
			})
		})
	}
}

// TestController_RunAgain is a server that loses the lead and gets it
// back: keys added while no Run was going wait, and a pass cut short by
// the end of a Run is run whole by the next.
func TestController_RunAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		passes := map[string]int{}
		release := make(chan struct{})
		c := New("test", ReconcileFunc(func(ctx context.Context, key string) (Result, error) {
			mu.Lock()
			passes[key]++
			mu.Unlock()
			if key == "slow" {
				select {
				case <-release:
				case <-ctx.Done():
					return Result{}, ctx.Err()
				}
			}
			return Result{}, nil
		}), Options{})
		defer c.ShutDown()

		term := func(work func()) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.Run(ctx) }()
			work()
			cancel()
			<-done
		}
		term(func() {
			c.Enqueue("slow")
			synctest.Wait() // "slow" is in its pass when the term ends
		})
		c.Enqueue("between") // no Run: it waits
		synctest.Wait()
		mu.Lock()
		if passes["between"] != 0 || passes["slow"] != 1 {
			t.Fatalf("between terms: passes %v, want slow once, between not yet", passes)
		}
		mu.Unlock()
		close(release)
		term(func() { synctest.Wait() })
		mu.Lock()
		defer mu.Unlock()
		if passes["between"] != 1 || passes["slow"] != 2 {
			t.Fatalf("after the second term: passes %v, want between once and slow again", passes)
		}
	})
}
