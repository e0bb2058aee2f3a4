package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkWebhookAck measures one webhook through the real router: request
// id, request log, shared-secret check, decode, classify, wake, 202.
func BenchmarkWebhookAck(b *testing.B) {
	bundle := setup(b)
	body := payload("INSERT", taskJSON("plan", ""), "null")
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/supabase", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(testWebhookHeader, testWebhookSecret)
		rec := httptest.NewRecorder()
		bundle.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
