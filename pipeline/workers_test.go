package pipeline

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWorkers(t *testing.T) {
	t.Parallel()

	t.Run("a waiting worker runs the next function", func(t *testing.T) {
		t.Parallel()
		w := newWorkers()
		first := make(chan struct{})
		w.run(func() { close(first) })
		<-first
		second := make(chan struct{})
		// The worker waits for its next function once the first returns.
		for !w.handOver(func() { close(second) }) {
			runtime.Gosched()
		}
		<-second
		require.Equal(t, int64(1), w.started.Load(), "both ran on the one goroutine")
		w.stop()
	})

	t.Run("functions are never queued behind a busy worker", func(t *testing.T) {
		t.Parallel()
		w := newWorkers()
		release := make(chan struct{})
		var ran atomic.Int32
		const n = 5
		done := make(chan struct{}, n)
		for range n {
			w.run(func() {
				ran.Add(1)
				<-release // every function blocks until all have started
				done <- struct{}{}
			})
		}
		// All n run at once: none waited for another to return.
		for ran.Load() < n {
			runtime.Gosched()
		}
		close(release)
		for range n {
			<-done
		}
		w.stop()
		require.Equal(t, int64(n), w.started.Load())
	})

	t.Run("an idle worker exits", func(t *testing.T) {
		t.Parallel()
		w := newWorkers()
		w.idle = time.Millisecond
		w.run(func() {})
		w.wg.Wait() // returns only once the worker has exited on its own
		require.False(t, w.handOver(func() {}), "no worker is left waiting")
	})

	t.Run("stop ends waiting workers and may be called twice", func(t *testing.T) {
		t.Parallel()
		w := newWorkers()
		w.idle = time.Hour
		ran := make(chan struct{})
		w.run(func() { close(ran) })
		<-ran
		w.stop() // would hang for an hour if the waiting worker did not quit
		w.stop()
	})
}
