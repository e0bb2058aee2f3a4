package model

import (
	"time"
)

// window is the span of Gemini's per-minute quotas.
const window = time.Minute

// slidingWindow tracks the requests and input tokens of one (project, model)
// over the last minute. It is not safe for concurrent use; KeyPool guards it.
type slidingWindow struct {
	events []windowEvent
}

type windowEvent struct {
	at     time.Time
	tokens int
	id     uint64
}

func (w *slidingWindow) prune(now time.Time) {
	i := 0
	for i < len(w.events) && !w.events[i].at.Add(window).After(now) {
		i++
	}
	w.events = w.events[i:]
}

// availableAt returns when one more request of tokens input tokens fits
// under lim (now if it fits already).
func (w *slidingWindow) availableAt(lim Limit, tokens int, now time.Time) time.Time {
	w.prune(now)
	at := now
	if lim.RPM > 0 && len(w.events) >= lim.RPM {
		if t := w.events[len(w.events)-lim.RPM].at.Add(window); t.After(at) {
			at = t
		}
	}
	if lim.TPM > 0 {
		used := 0
		for _, e := range w.events {
			used += e.tokens
		}
		// Free the oldest events until the request fits; a request larger than
		// the whole budget waits for an empty window.
		for i := 0; i < len(w.events) && used+tokens > lim.TPM; i++ {
			used -= w.events[i].tokens
			if t := w.events[i].at.Add(window); t.After(at) {
				at = t
			}
		}
	}
	return at
}

// add records a request and returns its id for a later correction.
func (w *slidingWindow) add(now time.Time, tokens int, id uint64) {
	w.events = append(w.events, windowEvent{at: now, tokens: tokens, id: id})
}

// correct replaces the estimated tokens of request id with the reported count.
func (w *slidingWindow) correct(id uint64, tokens int) {
	for i := range w.events {
		if w.events[i].id == id {
			w.events[i].tokens = tokens
			return
		}
	}
}

// estimateTokens guesses input tokens from text (about four bytes a token),
// before the model reports the real count.
func estimateTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += len(t)
	}
	return n/4 + 1
}
