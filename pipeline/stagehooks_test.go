package pipeline

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTemplateHooksDecodedOnce: the hooks of a template's stage_config are
// decoded once for the tasks of a claim, and each task's launcher snapshot
// is merged into a copy. For every template config and task snapshot, a
// task gets what decoding both afresh gives, and the template's decoded
// hooks are unchanged after any number of tasks, also at once (run with
// -race): encoding/json writes into an existing headers map and through an
// existing flag, so a merge into the shared hooks would leak one task's
// hooks into the next.
func TestTemplateHooksDecodedOnce(t *testing.T) {
	t.Parallel()
	configs := []string{
		``,
		`{}`,
		`not json`,
		`{"pre_process": {"enabled": false, "webhook_url": "https://a.example/pre", "webhook_headers": {"X-A": "1"}}}`,
		`{"pre_process": {"webhook_url": "https://a.example/pre", "webhook_headers": {"X-A": "1"}}}`,
		`{"post_process": {"enabled": false, "type": "merge_with_input", "webhook_headers": {"X-B": "2"}}, "pre_process": {"enabled": false}}`,
		`{"pre_process": {"enabled": true, "webhook_url": "https://a.example/pre"}, "post_process": {"webhook_url": "https://a.example/post"}}`,
	}
	extras := []string{
		`{}`,
		`{"current_stage_config": {"pre_process": {"enabled": true, "webhook_url": "https://t.example/pre", "webhook_headers": {"X-T": "t"}}}}`,
		`{"current_stage_config": {"post_process": {"webhook_headers": {"X-A": "task", "X-U": "u"}, "webhook_url": "https://t.example/post"}}}`,
		`{"pre_process": {"webhook_url": "https://t.example/pre2", "webhook_headers": {"X-A": "overwritten"}}}`,
		`{"post_process": {"enabled": true, "webhook_url": "https://t.example/post2", "webhook_headers": null}}`,
		`{"pre_process": {"enabled": true}, "post_process": {"enabled": true, "webhook_headers": {"X-B": "task"}}}`,
		`{"current_stage_config": "not an object", "pre_process": [1]}`,
	}
	for _, cfg := range configs {
		tpl := &Template{StageConfig: json.RawMessage(cfg), settings: &templateSettings{}}
		want := make([]stageSettings, len(extras))
		parsed := make([]taskExtra, len(extras))
		for i, e := range extras {
			require.NoError(t, json.Unmarshal([]byte(e), &parsed[i]))
			want[i] = stageConfig(json.RawMessage(cfg), parsed[i])
		}
		var wg sync.WaitGroup
		got := make([][]stageSettings, 8)
		for g := range got {
			wg.Go(func() {
				for range 3 {
					for _, e := range parsed {
						got[g] = append(got[g], withTaskHooks(templateStage(tpl), e))
					}
				}
			})
		}
		wg.Wait()
		for g := range got {
			for i, s := range got[g] {
				require.Equal(t, want[i%len(extras)], s, "config %s, task %s", cfg, extras[i%len(extras)])
			}
		}
		require.Equal(t, decodeStageSettings(json.RawMessage(cfg)), templateStage(tpl), "config %s: the template's hooks after every task", cfg)
	}
}

// BenchmarkTemplateHooks: a task's hooks, its template's stage_config
// decoded for every task (as before) and once per claim.
func BenchmarkTemplateHooks(b *testing.B) {
	cfg := json.RawMessage(`{"cardinality": "1:N", "split_path": "items", "pre_process": {"enabled": false}, "post_process": {"enabled": false}}`)
	var extra taskExtra
	b.Run("decoded_per_task", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = stageConfig(cfg, extra)
		}
	})
	b.Run("decoded_once_per_claim", func(b *testing.B) {
		tpl := &Template{StageConfig: cfg, settings: &templateSettings{}}
		b.ReportAllocs()
		for b.Loop() {
			_ = withTaskHooks(templateStage(tpl), extra)
		}
	})
}
