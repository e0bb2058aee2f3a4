package pipeline

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriteQueueDefaults: by default the write queue holds a
// complete_tasks call in flight and a whole call's worth behind it, past
// Concurrency; never less than Concurrency, and Concurrency alone when set
// negative.
func TestWriteQueueDefaults(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name             string
		cfg              DispatcherConfig
		wantQueue, bytes int
	}{
		{"default", DispatcherConfig{}, 2 * maxCompletions, defaultWriteQueueBytes},
		{"default_at_a_call", DispatcherConfig{Concurrency: maxCompletions}, 2 * maxCompletions, defaultWriteQueueBytes},
		{"default_past_a_call", DispatcherConfig{Concurrency: 5000}, 5000 + maxCompletions, defaultWriteQueueBytes},
		{"negative_is_concurrency_alone", DispatcherConfig{Concurrency: 100, WriteQueue: -1}, 100, defaultWriteQueueBytes},
		{"never_below_concurrency", DispatcherConfig{Concurrency: 100, WriteQueue: 10}, 100, defaultWriteQueueBytes},
		{"set", DispatcherConfig{Concurrency: 100, WriteQueue: 300, WriteQueueBytes: 1 << 10}, 300, 1 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDispatcher(&tt.cfg, nil, nil)
			require.Equal(t, tt.wantQueue, d.cfg.WriteQueue)
			require.Equal(t, tt.bytes, d.cfg.WriteQueueBytes)
		})
	}
}
