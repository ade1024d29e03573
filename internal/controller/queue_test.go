package controller

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestQueue(t *testing.T) {
	t.Run("adds of a waiting key merge into one", func(t *testing.T) {
		q := NewQueue(Backoff{})
		defer q.ShutDown()
		q.Add("a")
		q.Add("b")
		q.Add("a")
		if n := q.Len(); n != 2 {
			t.Fatalf("len = %d, want 2", n)
		}
		for _, want := range []string{"a", "b"} {
			if k, _ := q.Get(); k != want {
				t.Fatalf("got %q, want %q", k, want)
			}
			q.Done(want)
		}
	})
	t.Run("a key added while processed is handed out again only after Done", func(t *testing.T) {
		q := NewQueue(Backoff{})
		defer q.ShutDown()
		q.Add("a")
		k, _ := q.Get()
		q.Add(k)
		if n := q.Len(); n != 0 {
			t.Fatalf("len while processing = %d, want 0", n)
		}
		q.Done(k)
		if n := q.Len(); n != 1 {
			t.Fatalf("len after Done = %d, want 1", n)
		}
	})
	t.Run("a key is idle only when it neither waits nor is processed", func(t *testing.T) {
		q := NewQueue(Backoff{})
		defer q.ShutDown()
		if !q.Idle("a") {
			t.Fatal("a key never added is not idle")
		}
		q.Add("a")
		if q.Idle("a") {
			t.Fatal("a waiting key is idle")
		}
		k, _ := q.Get()
		if q.Idle(k) {
			t.Fatal("a key being processed is idle")
		}
		q.Done(k)
		if !q.Idle(k) {
			t.Fatal("a key done is not idle")
		}
	})
	t.Run("no key is ever held by two workers at once", func(t *testing.T) {
		q := NewQueue(Backoff{})
		var held sync.Map
		var overlap, handled atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k, ok := q.Get()
					if !ok {
						return
					}
					if _, dup := held.LoadOrStore(k, true); dup {
						overlap.Add(1)
					}
					time.Sleep(time.Microsecond) // widen the window a second worker would hit
					held.Delete(k)
					handled.Add(1)
					q.Done(k)
				}
			}()
		}
		for i := range 5000 {
			q.Add([]string{"a", "b", "c"}[i%3])
		}
		deadline := time.Now().Add(10 * time.Second)
		for q.Len() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		q.ShutDown()
		wg.Wait()
		if overlap.Load() != 0 {
			t.Fatalf("%d times a key was handed to a second worker while held", overlap.Load())
		}
		if handled.Load() == 0 {
			t.Fatal("nothing was handled")
		}
	})
	t.Run("AddAfter hands the key out once the delay has passed, the earliest delay winning", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := NewQueue(Backoff{})
			defer q.ShutDown()
			start := time.Now()
			q.AddAfter("a", 10*time.Second)
			q.AddAfter("a", 3*time.Second)
			q.AddAfter("a", 20*time.Second)
			synctest.Wait()
			if q.Len() != 0 {
				t.Fatal("the key was handed out before its delay")
			}
			k, _ := q.Get()
			if k != "a" || time.Since(start) != 3*time.Second {
				t.Fatalf("got %q after %v, want a after 3s", k, time.Since(start))
			}
			q.Done(k)
			time.Sleep(time.Minute)
			if q.Len() != 0 {
				t.Fatal("the later delays queued the key again")
			}
		})
	})
	t.Run("AddRateLimited backs off per key and Forget starts over", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := NewQueue(Backoff{Base: time.Second, Max: 4 * time.Second})
			defer q.ShutDown()
			var waits []time.Duration
			for range 4 {
				start := time.Now()
				q.AddRateLimited("a")
				k, _ := q.Get()
				waits = append(waits, time.Since(start))
				q.Done(k)
			}
			q.Forget("a")
			start := time.Now()
			q.AddRateLimited("a")
			q.Get()
			waits = append(waits, time.Since(start))
			want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, time.Second}
			for i := range want {
				if waits[i] != want[i] {
					t.Fatalf("waits = %v, want %v", waits, want)
				}
			}
		})
	})
	t.Run("ShutDown wakes blocked workers and ends the timer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := NewQueue(Backoff{})
			q.AddAfter("late", time.Hour)
			done := make(chan bool)
			go func() {
				_, ok := q.Get()
				done <- ok
			}()
			synctest.Wait()
			q.ShutDown()
			if <-done {
				t.Fatal("Get returned a key after ShutDown")
			}
			q.ShutDown() // twice is fine
			// synctest fails the test if the timer goroutine still runs.
		})
	})
}
