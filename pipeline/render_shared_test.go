package pipeline_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/pipeline"
)

func TestRenderShared(t *testing.T) {
	t.Parallel()
	docs := map[string]string{"handbook": "Tides rise twice a day."}
	block := pipeline.FormatGlobalContext(docs)
	tests := []struct {
		name         string
		givenTmpl    string
		givenDocs    map[string]string
		expectPrompt string
		expectShared string
	}{
		{
			name: "DocumentsFirst", givenTmpl: "Read these.\n%%GLOBAL_CONTEXT%%\nTopic: %%topic%%", givenDocs: docs,
			expectPrompt: "Read these.\n" + block + "\nTopic: tides", expectShared: "Read these.\n" + block + "\nTopic: ",
		},
		{
			name: "DocumentsAfterTaskTextAreMovedFirst", givenTmpl: "Topic: %%topic%%\nUse: %%GLOBAL_CONTEXT%%", givenDocs: docs,
			expectPrompt: block + "\n\nTopic: tides\nUse: (the documents above)", expectShared: block + "\n\n",
		},
		{
			name: "OneDocumentByNameStaysInPlace", givenTmpl: "Topic: %%topic%% %%GLOBAL_CONTEXT.handbook%%", givenDocs: docs,
			expectPrompt: "Topic: tides Tides rise twice a day.", expectShared: "Topic: ",
		},
		{
			name: "NoDocuments", givenTmpl: "Fixed instructions. Topic: %%topic%%",
			expectPrompt: "Fixed instructions. Topic: tides", expectShared: "Fixed instructions. Topic: ",
		},
		{
			name: "ContentBlanksStayShared", givenTmpl: "Fill {{blank}}. Topic: %%topic%%",
			expectPrompt: "Fill {{blank}}. Topic: tides", expectShared: "Fill {{blank}}. Topic: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vars := pipeline.Vars{Input: json.RawMessage(`{"topic":"tides"}`), GlobalContext: tt.givenDocs}
			prompt, shared, err := pipeline.RenderShared(tt.givenTmpl, vars)
			require.NoError(t, err)
			require.Equal(t, tt.expectPrompt, prompt)
			require.Equal(t, tt.expectShared, shared)
			require.True(t, strings.HasPrefix(prompt, shared))
			plain, err := pipeline.Render(tt.givenTmpl, vars)
			require.NoError(t, err)
			if !strings.Contains(tt.name, "Moved") {
				require.Equal(t, plain, prompt, "the prompt is unchanged unless documents move")
			}
		})
	}
}
