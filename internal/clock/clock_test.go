package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderOnlyWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	c2, _ := f.After(2 * time.Second)
	c1, _ := f.After(time.Second)
	c3, stop3 := f.After(3 * time.Second)
	stop3()
	if got := f.Timers(); got != 2 {
		t.Fatalf("timers = %d, want 2", got)
	}
	f.Advance(1500 * time.Millisecond)
	select {
	case at := <-c1:
		if !at.Equal(start.Add(1500 * time.Millisecond)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("1s timer did not fire after 1.5s")
	}
	select {
	case <-c2:
		t.Fatal("2s timer fired after 1.5s")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-c2:
	default:
		t.Fatal("2s timer did not fire after 2.5s")
	}
	select {
	case <-c3:
		t.Fatal("stopped timer fired")
	default:
	}
	if !f.Now().Equal(start.Add(2500 * time.Millisecond)) {
		t.Fatalf("now = %v", f.Now())
	}
}

func TestFakeWaitTimers(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	go f.After(time.Minute)
	if !f.WaitTimers(1, 5*time.Second) {
		t.Fatal("WaitTimers did not see the timer")
	}
	if f.WaitTimers(2, 50*time.Millisecond) {
		t.Fatal("WaitTimers saw a timer that does not exist")
	}
}
