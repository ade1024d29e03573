package agent

import "testing"

func TestQueue_MergesAndSerialises(t *testing.T) {
	q := newQueue()
	q.add("a")
	q.add("b")
	q.add("a") // merged with the waiting "a"

	k, _ := q.get()
	if k != "a" {
		t.Fatalf("first key = %q, want a", k)
	}
	q.add("a") // re-added while processing: must not be handed out now
	k2, _ := q.get()
	if k2 != "b" {
		t.Fatalf("second key = %q, want b (a is still processing)", k2)
	}
	q.done("a")
	k3, _ := q.get()
	if k3 != "a" {
		t.Fatalf("third key = %q, want a again after done", k3)
	}
	q.done("b")
	q.done("a")
	q.close()
	if _, ok := q.get(); ok {
		t.Fatal("get after close returned a key")
	}
}
