package handlers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/handlers"
	"github.com/orchable/orchable/pipeline"
)

func metricsServer(t *testing.T, m *handlers.Metrics, token string) *echo.Echo {
	t.Helper()
	pass := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	e := echo.New()
	handlers.Register(e, &handlers.Deps{
		DB: newFakeDB(), UserAuth: pass, WebhookAuth: pass, Wake: &fakeWaker{accept: true},
		Ready: func(context.Context) error { return nil }, Metrics: m, MetricsToken: token,
	})
	return e
}

func get(e *echo.Echo, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// With METRICS_TOKEN set, /metrics answers 401 without the bearer token
// (and with a wrong one, or the token in another scheme); open without it.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	const token = "operator-metrics-token-0123456789"
	e := metricsServer(t, handlers.NewMetrics(), token)
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic " + token, "bearer" + token, "Bearer " + token + "x", token} {
		rec := get(e, auth)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "%q", auth)
		require.NotContains(t, rec.Body.String(), "orchable_")
		require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
	}
	rec := get(e, "Bearer "+token)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "go_goroutines")

	open := metricsServer(t, handlers.NewMetrics(), "")
	require.Equal(t, http.StatusOK, get(open, "").Code)
}

// Stage labels: the first N well-formed keys, then "other"; long or odd
// keys are never labels.
func TestMetricsStageLabelBounded(t *testing.T) {
	t.Parallel()
	m := handlers.NewMetricsWithStageLabels(3)
	res := pipeline.Result{Outcome: pipeline.OutcomeCompleted}
	for _, s := range []string{"a", "b", "a", "c", "d", strings.Repeat("x", 65), "evil\"} 1\nfake_metric{x=\"", "tenant secret name", ""} {
		m.TaskFinished(res, s, time.Millisecond)
	}
	body := get(metricsServer(t, m, ""), "").Body.String()
	for _, want := range []string{`stage="a"`, `stage="b"`, `stage="c"`, `stage="other"`, `stage="none"`} {
		require.Contains(t, body, want)
	}
	for _, not := range []string{`stage="d"`, "xxxxxxxx", "fake_metric", "tenant secret"} {
		require.NotContains(t, body, not)
	}
	zero := handlers.NewMetricsWithStageLabels(0)
	zero.TaskFinished(res, "a", time.Millisecond)
	require.NotContains(t, get(metricsServer(t, zero, ""), "").Body.String(), `stage="a"`)
}

// TestDrillStageKeys is the drill of issue 13 part 4: 10,000 distinct stage
// keys through the observer the dispatcher calls for every finished task.
// It prints the resident-set growth, the series count and /metrics size
// and scrape time with the default bound (50), and, for comparison, with a
// bound of 10,000 (what an unbounded label did).
func TestDrillStageKeys(t *testing.T) { //nolint:paralleltest // measures this process's memory growth; tests alongside would skew it
	const keys = 10000
	run := func(bound int) (rssGrowthKB, heapGrowthKB int64, bytes, series int, scrape time.Duration) {
		rss0, heap0 := memNow()
		m := handlers.NewMetricsWithStageLabels(bound)
		res := pipeline.Result{Outcome: pipeline.OutcomeCompleted, ModelLatency: 30 * time.Millisecond}
		for i := range keys {
			stage := fmt.Sprintf("stage_%05d_%s", i, strings.Repeat("k", 38)) // 50 characters, the column's size
			m.TaskFinished(res, stage, 40*time.Millisecond)
		}
		e := metricsServer(t, m, "")
		start := time.Now()
		rec := get(e, "")
		scrape = time.Since(start)
		body, _ := io.ReadAll(rec.Body)
		for line := range strings.SplitSeq(string(body), "\n") {
			if strings.HasPrefix(line, "orchable_") {
				series++
			}
		}
		rss1, heap1 := memNow()
		runtime.KeepAlive(m)
		return rss1 - rss0, heap1 - heap0, len(body), series, scrape
	}
	rssB, heapB, bytesB, seriesB, scrapeB := run(handlers.DefaultStageLabels) // first: the RSS figure is not blurred by the other run
	rssU, heapU, bytesU, seriesU, scrapeU := run(keys)
	t.Logf("stage-keys drill: %d distinct stage keys", keys)
	t.Logf("  unbounded (label per key): rss_growth=%d KiB heap_growth=%d KiB series=%d metrics_bytes=%d scrape=%s", rssU, heapU, seriesU, bytesU, scrapeU.Round(time.Millisecond))
	t.Logf("  bounded (first %d, then other): rss_growth=%d KiB heap_growth=%d KiB series=%d metrics_bytes=%d scrape=%s", handlers.DefaultStageLabels, rssB, heapB, seriesB, bytesB, scrapeB.Round(time.Millisecond))
	require.Less(t, bytesB, 512<<10, "/metrics stays small")
	require.Less(t, seriesB, 2000, "series stay bounded")
	require.Less(t, heapB, int64(8<<10), "heap growth stays under 8 MiB")
}

// memNow returns the process's resident set (VmRSS) and live heap, in KiB,
// after a GC.
func memNow() (rssKB, heapKB int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapKB = int64(ms.HeapAlloc >> 10) // small
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				rssKB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			}
		}
	}
	return rssKB, heapKB
}
