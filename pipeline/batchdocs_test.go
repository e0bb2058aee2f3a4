package pipeline

import (
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// batchWithDocuments is a batch whose global_context holds three documents
// of size bytes each, as a launcher attaches them.
func batchWithDocuments(size int) Batch {
	docs := map[string]string{}
	for _, name := range []string{"syllabus", "glossary", "style guide"} {
		docs[name] = strings.Repeat("A line of the "+name+" with \"quotes\" and a tab\t.\n", size/48+1)[:size]
	}
	raw, _ := json.Marshal(docs)
	return Batch{ID: uuid.New(), Name: "docs", Status: "processing", GlobalContext: raw}
}

// renderWithBatch renders tmpl for task as Runner.execute does.
func renderWithBatch(t testing.TB, tmpl string, task *Task, b *Batch) (string, string) {
	t.Helper()
	docs, text := batchDocuments(b)
	prompt, shared, err := RenderShared(tmpl, Vars{Input: task.InputData, GlobalContext: docs, Task: taskFields(task), documents: text})
	require.NoError(t, err)
	return prompt, shared
}

// TestBatchDocumentsMadeOnce: the tasks of a claim share their batch's
// documents, decoded and formatted once, and every task's prompt is what
// decoding them for that task gives, for any global_context (documents,
// values that are not text, none, null, not an object, not JSON) and any
// template, also from eight tasks at once (run with -race); the shared
// documents are unchanged after them.
func TestBatchDocumentsMadeOnce(t *testing.T) {
	t.Parallel()
	contexts := []string{
		string(batchWithDocuments(2000).GlobalContext),
		`{"b": "second", "a": "first", "n": 12, "obj": {"k": [1, "x"]}, "nul": null}`,
		`{}`, `null`, `[1, 2]`, `"text"`, `{"broken": `, ``,
	}
	templates := []string{
		"%%GLOBAL_CONTEXT%%\n\nQuestion: %%question%%",
		"Question: %%question%%\n\nUsing:\n{{GLOBAL_CONTEXT}}",
		"%%GLOBAL_CONTEXT.a%% then %%GLOBAL_CONTEXT.n%% and %%question%%",
		"No documents: %%question%%",
	}
	task := Task{ID: uuid.New(), UserID: uuid.New(), InputData: json.RawMessage(`{"question": "What is a noun?", "a": "input's a"}`)}
	for _, gc := range contexts {
		shared := Batch{ID: uuid.New(), GlobalContext: json.RawMessage(gc), docs: &batchDocs{}}
		for _, tmpl := range templates {
			alone := Batch{ID: shared.ID, GlobalContext: shared.GlobalContext}
			wantPrompt, wantShared, err := RenderShared(tmpl, Vars{Input: task.InputData, GlobalContext: globalContext(&alone), Task: taskFields(&task)})
			if err != nil {
				// A placeholder with no value fails the same way either way.
				b := shared
				docs, text := batchDocuments(&b)
				_, _, err2 := RenderShared(tmpl, Vars{Input: task.InputData, GlobalContext: docs, Task: taskFields(&task), documents: text})
				require.Equal(t, err, err2, "context %q, template %q", gc, tmpl)
				continue
			}
			var wg sync.WaitGroup
			prompts := make([][2]string, 8)
			for i := range prompts {
				wg.Go(func() {
					b := shared // each task holds its own copy of the batch, sharing its documents
					docs, text := batchDocuments(&b)
					p, s, err := RenderShared(tmpl, Vars{Input: task.InputData, GlobalContext: docs, Task: taskFields(&task), documents: text})
					if err == nil {
						prompts[i] = [2]string{p, s}
					}
				})
			}
			wg.Wait()
			for _, p := range prompts {
				require.Equal(t, [2]string{wantPrompt, wantShared}, p, "context %q, template %q", gc, tmpl)
			}
		}
		require.Equal(t, globalContext(&shared), shared.docs.docs, "the shared documents are unchanged after the tasks (context %q)", gc)
		require.Equal(t, FormatGlobalContext(globalContext(&shared)), shared.docs.text)
	}

	// A claim gives each batch one set of documents, shared by its tasks.
	b := batchWithDocuments(100)
	first, _ := batchDocuments(&b)
	require.Nil(t, b.docs, "a batch not from a claim is decoded for each task")
	b.docs = &batchDocs{}
	d1, _ := batchDocuments(&b)
	copied := b
	d2, _ := batchDocuments(&copied)
	require.Equal(t, first, d1)
	require.True(t, maps.Equal(d1, d2))
	d1["syllabus"] = "changed"
	require.Equal(t, "changed", d2["syllabus"], "the tasks of a claim share one decoded map")
}

// BenchmarkBatchDocuments is what one task of a batch with 3 × 20 KB of
// documents costs to render its prompt (the documents first): "per task"
// decodes and formats the documents for every task, as before they were
// made once per claim; "per claim" is what a task of a claim costs now.
func BenchmarkBatchDocuments(b *testing.B) {
	task := Task{ID: uuid.New(), UserID: uuid.New(), InputData: json.RawMessage(`{"question": "What is a noun?"}`)}
	tmpl := "%%GLOBAL_CONTEXT%%\n\nAnswer the question using the documents: %%question%%"
	b.Run("per task", func(b *testing.B) {
		batch := batchWithDocuments(20 << 10)
		b.ReportAllocs()
		for b.Loop() {
			renderWithBatch(b, tmpl, &task, &batch)
		}
	})
	b.Run("per claim", func(b *testing.B) {
		batch := batchWithDocuments(20 << 10)
		batch.docs = &batchDocs{}
		b.ReportAllocs()
		for b.Loop() {
			renderWithBatch(b, tmpl, &task, &batch)
		}
	})
}
