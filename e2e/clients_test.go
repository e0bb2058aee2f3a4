package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// vmRSS reads a process's resident set size in kB from /proc.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			require.NoError(t, err)
			return n
		}
	}
	require.FailNow(t, "no VmRSS in /proc/<pid>/status")
	return 0
}

// TestDrillSlowAndMaliciousClients sends oversized bodies, slowloris-style
// slow bodies and 1,000 concurrent requests with bad tokens, while probing
// /healthz: the probes stay fast (p99 printed) and the service's RSS stays
// bounded.
func TestDrillSlowAndMaliciousClients(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOpts{Env: map[string]string{"ORCHABLE_MODEL_PROVIDER": "offline", "LOG_LEVEL": "warn"}})
	pid := s.svc.cmd.Process.Pid
	rssStart := vmRSS(t, pid)
	var peak atomic.Int64
	peak.Store(int64(rssStart))
	stop := make(chan struct{})
	var bg sync.WaitGroup

	// RSS sampler and /healthz prober.
	var latencies []time.Duration
	var probeErrs atomic.Int64
	bg.Add(2)
	go func() {
		defer bg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
					for line := range strings.SplitSeq(string(b), "\n") {
						if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
							n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
							if int64(n) > peak.Load() {
								peak.Store(int64(n))
							}
						}
					}
				}
			}
		}
	}()
	go func() {
		defer bg.Done()
		probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				t0 := time.Now()
				resp, err := probe.Get(s.svcURL() + "/healthz")
				if err != nil {
					probeErrs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					probeErrs.Add(1)
				}
				latencies = append(latencies, time.Since(t0))
			}
		}
	}()

	// 1. Oversized bodies: the webhook and the user API answer 413.
	big := bytes.Repeat([]byte("x"), 12<<20)
	req, err := http.NewRequest(http.MethodPost, s.svcURL()+"/webhooks/supabase", bytes.NewReader(big))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pg_net/0.14.0")
	req.Header.Set("X-Supabase-Webhook-Source", s.webhookKey)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	webhook413 := resp.StatusCode
	u := s.createUser()
	req, err = http.NewRequest(http.MethodPost, s.svcURL()+"/api/v1/batches", bytes.NewReader(big))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.userJWT(u))
	resp, err = httpClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	api413 := resp.StatusCode

	// 2. Slowloris: connections that send headers and then trickle the body.
	const slowConns = 200
	var slow sync.WaitGroup
	var slowOpened atomic.Int64
	for range slowConns {
		slow.Go(func() {
			c, err := net.DialTimeout("tcp", s.svcAddr, 2*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			slowOpened.Add(1)
			_, _ = fmt.Fprintf(c, "POST /webhooks/supabase HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nUser-Agent: pg_net/0.14.0\r\n"+
				"X-Supabase-Webhook-Source: %s\r\nContent-Length: 1000000\r\n\r\n{", s.svcAddr, s.webhookKey)
			// Deliberate pacing (the attack itself): one byte every 200ms for 3s.
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for range 15 {
				<-tick.C
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		})
	}

	// 3. 1,000 concurrent requests with bad tokens.
	forged := []string{
		"not-a-jwt",
		jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": u.String(), "role": "authenticated", "aud": "authenticated",
			"iss": s.restURL + "/auth/v1", "exp": time.Now().Add(time.Hour).Unix(),
		}).Raw, // unsigned
	}
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": u.String(), "role": "authenticated", "aud": "authenticated",
		"iss": s.restURL + "/auth/v1", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("wrong-secret"))
	expired := s.sign(jwt.MapClaims{
		"sub": u.String(), "role": "authenticated", "aud": "authenticated", "iss": s.restURL + "/auth/v1",
		"exp": time.Now().Add(-time.Hour).Unix(),
	})
	badAud := s.sign(jwt.MapClaims{
		"sub": u.String(), "role": "authenticated", "aud": "other", "iss": s.restURL + "/auth/v1",
		"exp": time.Now().Add(time.Hour).Unix(),
	})
	forged = append(forged, wrongKey, expired, badAud)
	bad := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	var codes sync.Map
	var storm sync.WaitGroup
	stormStart := time.Now()
	for i := range 1000 {
		storm.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, s.svcURL()+"/api/v1/batches/"+uuid.NewString(), nil)
			req.Header.Set("Authorization", "Bearer "+forged[i%len(forged)])
			resp, err := bad.Do(req)
			code := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				code = resp.StatusCode
			}
			v, _ := codes.LoadOrStore(code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		})
	}
	storm.Wait()
	stormTook := time.Since(stormStart)
	bad.CloseIdleConnections()
	slow.Wait()
	close(stop)
	bg.Wait()

	byCode := map[int]int64{}
	codes.Range(func(k, v any) bool { byCode[k.(int)] = v.(*atomic.Int64).Load(); return true })
	slices.Sort(latencies)
	require.NotEmpty(t, latencies)
	p := func(q float64) time.Duration { return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))] }
	rssEnd := vmRSS(t, pid)
	t.Logf("slow-clients: webhook_12MiB=%d api_12MiB=%d slowloris_conns=%d bad_token_requests=1000 by_status=%v storm_took=%s healthz_probes=%d healthz_errors=%d healthz_p50=%s p99=%s max=%s rss_start=%dMB rss_peak=%dMB rss_end=%dMB",
		webhook413, api413, slowOpened.Load(), byCode, stormTook.Round(time.Millisecond), len(latencies), probeErrs.Load(),
		p(0.5).Round(time.Microsecond), p(0.99).Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Microsecond),
		rssStart/1024, peak.Load()/1024, rssEnd/1024)
	require.Equal(t, http.StatusRequestEntityTooLarge, webhook413, "oversized webhook body")
	require.Equal(t, http.StatusRequestEntityTooLarge, api413, "oversized user API body")
	require.Equal(t, map[int]int64{http.StatusUnauthorized: 1000}, byCode, "bad tokens must all get 401")
	require.Zero(t, probeErrs.Load(), "/healthz failed during the storm")
	// The bound is loose on purpose: this runs on 2 cores beside the rest of
	// the race-enabled suite. It still catches starvation (a slowloris or a
	// token storm blocking the server takes the p99 to the 3 s+ timeouts);
	// the printed figures are the measurement (about 7 ms p99 when alone).
	require.Less(t, p(0.99), 2*time.Second, "/healthz p99 during the storm")
	require.Less(t, peak.Load(), int64(150*1024), "service RSS (kB) during the storm")
	require.True(t, s.svc.running())
}
