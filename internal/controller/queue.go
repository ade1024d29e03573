package controller

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Queue is a work queue of keys with client-go's guarantees: a key waits
// at most once (adds merge), a key being processed is never handed to a
// second worker (added meanwhile, it is handed out again after Done), and
// failures back off per key.
type Queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	dirty      map[string]bool
	processing map[string]bool
	shutDown   bool

	// Delayed adds wait in a heap served by one timer goroutine.
	delayed  delayHeap
	waiting  map[string]*delayed // the earliest pending delayed add per key
	wake     chan struct{}
	timerEnd chan struct{}

	// failures counts the consecutive failures of a key (AddRateLimited).
	failures map[string]int
	backoff  Backoff
	now      func() time.Time
}

// Backoff is the per-key retry delay after n consecutive failures:
// Base doubling up to Max.
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff retries a failing key after 100 ms, doubling to 1 min.
var DefaultBackoff = Backoff{Base: 100 * time.Millisecond, Max: time.Minute}

// Delay is the wait before the (n+1)th attempt after n failures.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// NewQueue returns a queue; ShutDown ends it and its timer goroutine.
func NewQueue(b Backoff) *Queue {
	if b.Base <= 0 {
		b = DefaultBackoff
	}
	q := &Queue{
		dirty:      map[string]bool{},
		processing: map[string]bool{},
		waiting:    map[string]*delayed{},
		wake:       make(chan struct{}, 1),
		timerEnd:   make(chan struct{}),
		failures:   map[string]int{},
		backoff:    b,
		now:        time.Now,
	}
	q.cond = sync.NewCond(&q.mu)
	go q.runTimer()
	return q
}

// Add queues key now.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.shutDown || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if !q.processing[key] {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// AddAfter queues key once d has passed; an earlier pending AddAfter of
// the same key wins.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutDown {
		return
	}
	at := q.now().Add(d)
	if w, ok := q.waiting[key]; ok {
		if !at.Before(w.at) {
			return
		}
		w.at = at
		heap.Fix(&q.delayed, w.index)
	} else {
		w := &delayed{key: key, at: at}
		q.waiting[key] = w
		heap.Push(&q.delayed, w)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// AddRateLimited queues key after its back-off: the more it failed in a
// row, the longer the wait. Forget resets it.
func (q *Queue) AddRateLimited(key string) {
	q.mu.Lock()
	q.failures[key]++
	n := q.failures[key]
	q.mu.Unlock()
	q.AddAfter(key, q.backoff.Delay(n))
}

// Forget clears key's failure count: its next failure waits Base again.
func (q *Queue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// Failures is how many times in a row key failed.
func (q *Queue) Failures(key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get blocks until a key is ready; ok is false once the queue is shut
// down. The caller must call Done(key) when it has processed it.
func (q *Queue) Get() (key string, ok bool) { return q.GetContext(context.Background()) }

// GetContext is Get that also returns ok false once ctx ends; the queue
// goes on.
func (q *Queue) GetContext(ctx context.Context) (key string, ok bool) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutDown && ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.shutDown || ctx.Err() != nil {
		return "", false
	}
	key, q.order = q.order[0], q.order[1:]
	delete(q.dirty, key)
	q.processing[key] = true
	return key, true
}

// Done marks key processed; if it was added meanwhile it is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.shutDown {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// Idle reports whether key neither waits in the queue nor is being
// processed (a delayed add that is not due yet does not count).
func (q *Queue) Idle(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.dirty[key] && !q.processing[key]
}

// Len is the number of keys ready to be handed out.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// ShutDown makes Get return false and stops the timer goroutine; it
// returns once that goroutine has ended. Safe to call more than once.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	already := q.shutDown
	q.shutDown = true
	q.cond.Broadcast()
	q.mu.Unlock()
	if !already {
		close(q.wake)
	}
	<-q.timerEnd
}

// runTimer moves delayed keys to the queue when they are due.
func (q *Queue) runTimer() {
	defer close(q.timerEnd)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		q.mu.Lock()
		now := q.now()
		for q.delayed.Len() > 0 && !q.delayed[0].at.After(now) {
			w := heap.Pop(&q.delayed).(*delayed)
			delete(q.waiting, w.key)
			q.addLocked(w.key)
		}
		next := time.Hour
		if q.delayed.Len() > 0 {
			next = q.delayed[0].at.Sub(now)
		}
		q.mu.Unlock()
		t.Reset(next)
		select {
		case _, ok := <-q.wake:
			if !ok {
				return
			}
		case <-t.C:
		}
	}
}

type delayed struct {
	key   string
	at    time.Time
	index int
}

type delayHeap []*delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *delayHeap) Push(x any) {
	d := x.(*delayed)
	d.index = len(*h)
	*h = append(*h, d)
}
func (h *delayHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}
