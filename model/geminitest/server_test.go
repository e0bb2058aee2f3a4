package geminitest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/orchable/orchable/baseservice/baseservicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerRequests(t *testing.T) {
	t.Parallel()
	clock := baseservicetest.NewFakeClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	srv := New(Config{Keys: map[string]string{"k1": "p1"}, Quotas: map[string]Quota{"p1": {RPD: 1}}, Clock: clock})
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}

	post := func(path, key, body string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("x-goog-api-key", key)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}
	schemaBody := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}}}`

	tests := []struct {
		name             string
		givenPath        string
		givenKey         string
		expectStatus     int
		expectStatusText string
	}{
		{name: "WrongPath", givenPath: "/v1beta/models/m:countTokens", givenKey: "k1", expectStatus: 404, expectStatusText: "NOT_FOUND"},
		{name: "NoKey", givenPath: "/v1beta/models/m:generateContent", expectStatus: 403, expectStatusText: "PERMISSION_DENIED"},
		{name: "BadKey", givenPath: "/v1beta/models/m:generateContent", givenKey: "nope", expectStatus: 400, expectStatusText: "INVALID_ARGUMENT"},
		{name: "OK", givenPath: "/v1beta/models/m:generateContent", givenKey: "k1", expectStatus: 200},
		{name: "DailyQuota", givenPath: "/v1beta/models/m:generateContent", givenKey: "k1", expectStatus: 429, expectStatusText: "RESOURCE_EXHAUSTED"},
	}
	for _, tt := range tests { // sequential: the quota case depends on the OK case
		code, out := post(tt.givenPath, tt.givenKey, schemaBody)
		require.Equal(t, tt.expectStatus, code, tt.name)
		if tt.expectStatusText != "" {
			require.Equal(t, tt.expectStatusText, out["error"].(map[string]any)["status"], tt.name)
			continue
		}
		text := out["candidates"].([]any)[0].(map[string]any)["content"].(map[string]any)["parts"].([]any)[0].(map[string]any)["text"].(string)
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(text), &v))
		require.Contains(t, v, "a")
	}
	st := srv.Stats()
	require.Equal(t, 1, st.OK)
	require.Equal(t, 1, st.ByProject["p1"].PerDay)

	// The daily quota resets at midnight Pacific (08:00 UTC in November).
	clock.Set(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC))
	code, _ := post("/v1beta/models/m:generateContent", "k1", schemaBody)
	require.Equal(t, 200, code)
}
