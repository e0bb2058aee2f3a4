package pipeline

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a worker goroutine waits for its next function
// before it exits.
const workerIdle = 2 * time.Second

// workers runs functions on goroutines that wait a while for the next
// function when theirs returns, so that under load a task starts on a
// goroutine whose stack has already grown to what a task's run needs. A
// new goroutine starts with a small stack and copies it to a larger one
// each time the run's calls go deeper (JSON decoding, rendering, the model
// call): in throughput-noop's profile that was about 8 µs of CPU per task
// (docs/performance.md, eleventh round). Functions are never queued: one
// with no worker waiting gets a new goroutine at once.
type workers struct {
	idle     time.Duration
	work     chan func()
	quit     chan struct{}
	quitOnce sync.Once
	wg       sync.WaitGroup
	started  atomic.Int64 // goroutines started, for tests
}

func newWorkers() *workers {
	return &workers{idle: workerIdle, work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on a waiting worker, or on a new one.
func (w *workers) run(f func()) {
	if !w.handOver(f) {
		w.started.Add(1)
		w.wg.Add(1)
		go w.loop(f)
	}
}

// handOver gives f to a waiting worker, if one is waiting.
func (w *workers) handOver(f func()) bool {
	select {
	case w.work <- f:
		return true
	default:
		return false
	}
}

func (w *workers) loop(f func()) {
	defer w.wg.Done()
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(w.idle)
		select {
		case f = <-w.work:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop makes the waiting workers exit and waits for every worker to. The
// caller must have stopped calling run and waited for the functions it gave.
func (w *workers) stop() {
	w.quitOnce.Do(func() { close(w.quit) })
	w.wg.Wait()
}
