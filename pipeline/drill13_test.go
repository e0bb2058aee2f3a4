package pipeline_test

// Drills of issue 13 (a hostile tenant): the SSRF matrix through the real
// runner and PostgreSQL, and the noisy neighbour through the real
// dispatcher. Each prints its figures with t.Logf (go test -v -run Drill13).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/orchable/orchable/model"
	"github.com/orchable/orchable/pipeline"
	"github.com/orchable/orchable/supabase/dbtest"
)

// loopbackDNS is a DNS server on 127.0.0.1 that answers every name with
// 127.0.0.1 (A) and ::1 (AAAA): the rebinding attacker's name server.
type loopbackDNS struct {
	conn    net.PacketConn
	queries atomic.Int64
}

func newLoopbackDNS(t *testing.T) *loopbackDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	d := &loopbackDNS{conn: pc}
	t.Cleanup(func() { _ = pc.Close() })
	go d.serve()
	return d
}

func (d *loopbackDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, addr, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		d.queries.Add(1)
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true})
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
		switch q.Type {
		case dnsmessage.TypeA:
			_ = b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
		case dnsmessage.TypeAAAA:
			_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: [16]byte{15: 1}})
		default:
			// Other types get an answer without records.
		}
		out, err := b.Finish()
		if err == nil {
			_, _ = d.conn.WriteTo(out, addr)
		}
	}
}

func (d *loopbackDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "udp4", d.conn.LocalAddr().String())
	}}
}

// countingServer counts the requests it gets and remembers the last headers.
type countingServer struct {
	*httptest.Server

	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		s.last = r.Header.Clone()
		s.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"stolen": "from inside"}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) port() string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

type hookCase struct {
	name    string
	url     string
	method  string
	headers map[string]string
}

// TestDrill13SSRFMatrix aims a stage's pre-process hook (on_failure abort,
// output_handling replace: a reached hook's answer would become the task's
// input and so its output) at every inside target. The guarded runner is
// the production configuration with the attacker's DNS; every task must
// fail with a message that tells nothing about the network, no sentinel
// server on loopback may see a request and no task may store an output.
// No traffic leaves loopback: literal non-loopback addresses are refused
// before dialling, and every name resolves to loopback.
func TestDrill13SSRFMatrix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	dns := newLoopbackDNS(t)
	sentinel := newCountingServer(t, nil) // stands in for /readyz, an admin port, a metadata server
	p := sentinel.port()
	cases := []hookCase{
		{name: "loopback IP, sentinel port", url: "http://127.0.0.1:" + p + "/readyz"},
		{name: "loopback IP, port 80", url: "http://127.0.0.1/"},
		{name: "loopback 127.1.2.3", url: "http://127.1.2.3:" + p + "/"},
		{name: "localhost by name", url: "http://localhost:" + p + "/"},
		{name: "LOCALHOST. (case, dot)", url: "http://LOCALHOST./"},
		{name: "0.0.0.0", url: "http://0.0.0.0:" + p + "/"},
		{name: "[::1]", url: "http://[::1]:" + p + "/"},
		{name: "[::1] port 443", url: "https://[::1]/"},
		{name: "IPv4-mapped [::ffff:127.0.0.1]", url: "http://[::ffff:127.0.0.1]:" + p + "/"},
		{name: "IPv4-mapped [::ffff:7f00:1] port 80", url: "http://[::ffff:7f00:1]/"},
		{name: "metadata 169.254.169.254", url: "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token", headers: map[string]string{"Metadata-Flavor": "Google"}},
		{name: "metadata.google.internal", url: "http://metadata.google.internal/computeMetadata/v1/", headers: map[string]string{"Metadata-Flavor": "Google"}},
		{name: "10.0.0.1", url: "http://10.0.0.1/"},
		{name: "172.16.0.1", url: "http://172.16.0.1/"},
		{name: "192.168.1.1", url: "https://192.168.1.1/"},
		{name: "CGNAT 100.64.0.1", url: "http://100.64.0.1/"},
		{name: "Fly 6PN [fdaa::2]", url: "http://[fdaa::2]/"},
		{name: "link-local [fe80::1]", url: "http://[fe80::1]/"},
		{name: "app.internal", url: "http://my-app.internal/"},
		{name: "app.flycast", url: "http://my-app.flycast/"},
		{name: "DNS name → 127.0.0.1, port 80", url: "http://rebind.attacker.test/"},
		{name: "DNS name → 127.0.0.1, port 443", url: "https://rebind.attacker.test/"},
		{name: "DNS name → loopback, sentinel port", url: "http://rebind.attacker.test:" + p + "/"},
		{name: "decimal 2130706433 (via DNS)", url: "http://2130706433/"},
		{name: "credentials in URL", url: "http://user:pw@127.0.0.1:" + p + "/"},
		{name: "method DELETE", url: "http://rebind.attacker.test/", method: "DELETE"},
		{name: "scheme file", url: "file:///etc/passwd"},
		{name: "scheme gopher", url: "gopher://127.0.0.1:" + p + "/"},
	}
	gen := newScripted()
	prefix := "ssrf-" + uuid.NewString()[:8] + "-"
	stageOf := map[string]string{}
	for i, c := range cases {
		spec := map[string]any{"enabled": true, "webhook_url": c.url, "on_failure": "abort", "output_handling": "replace"}
		if c.method != "" {
			spec["webhook_method"] = c.method
		}
		if c.headers != nil {
			spec["webhook_headers"] = c.headers
		}
		key := fmt.Sprintf("ssrf%02d", i)
		stageOf[key] = c.name
		b.templates(ctx, t, b.user, stage{id: prefix + key, key: key, prompt: "FAKE echo {{input.n}}", cfg: map[string]any{"pre_process": spec}})
		b.launch(ctx, t, b.user, prefix+key, map[string]any{"n": i})
	}
	start := time.Now()
	e := &engine{finished: make(chan pipeline.Result, 1000)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "ssrf", Hooks: pipeline.HookConfig{Resolver: dns.resolver(), Timeout: 3 * time.Second}}, b.db, gen)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 8, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	e.disps = append(e.disps, d)
	b.quiesce(ctx, t, e, b.user)
	elapsed := time.Since(start)

	tree := b.tree(ctx, t, b.user)
	require.Len(t, tree, len(cases))
	t.Logf("SSRF matrix (%d targets, production hook client, attacker's DNS answering 127.0.0.1/::1):", len(cases))
	for _, row := range tree {
		t.Logf("  %-40s → %s, output=%s, error_message=%q", stageOf[row.Stage], row.Status, row.Output, row.ErrorMessage)
		require.Equal(t, "failed", row.Status, stageOf[row.Stage])
		require.JSONEq(t, "null", string(row.Output), "nothing stored for %s", stageOf[row.Stage])
		require.NotContains(t, row.Input, "stolen")
		for _, leak := range []string{"connection refused", "EOF", "dial tcp", "i/o timeout", "no such host", "reset by peer"} {
			require.NotContains(t, row.ErrorMessage, leak, stageOf[row.Stage])
		}
	}
	require.Zero(t, sentinel.hits.Load(), "a loopback server was reached")
	require.Zero(t, gen.calls.Load(), "no task reached the model")
	require.Positive(t, dns.queries.Load(), "names were resolved (the check is after DNS)")
	t.Logf("SSRF matrix: %d/%d refused, sentinel requests=0, outputs stored=0, DNS queries answered with loopback=%d, model calls=0, time=%s",
		len(tree), len(cases), dns.queries.Load(), elapsed.Round(time.Millisecond))
}

// TestDrill13HookRedirectAndHeaders runs with the test opt-in (loopback
// reachable) to show what holds even for a reachable hook: a redirect to
// another loopback server (or to the metadata address) is not followed and
// nothing of it is stored; metadata, Host and hop-by-hop headers never
// arrive; a DELETE is refused before any request.
func TestDrill13HookRedirectAndHeaders(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	inside := newCountingServer(t, nil)
	redirector := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		to := inside.URL + "/admin"
		if r.URL.Path == "/metadata" {
			to = "http://169.254.169.254/computeMetadata/v1/"
		}
		http.Redirect(w, r, to, http.StatusTemporaryRedirect)
	})
	echo := newCountingServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"n": 1, "hooked": true}`)) })
	prefix := "redir-" + uuid.NewString()[:8] + "-"
	mk := func(key string, spec map[string]any) {
		spec["enabled"], spec["on_failure"], spec["output_handling"] = true, "abort", "replace"
		b.templates(ctx, t, b.user, stage{id: prefix + key, key: key, prompt: "FAKE echo {{input.n}}", cfg: map[string]any{"pre_process": spec}})
		b.launch(ctx, t, b.user, prefix+key, map[string]any{"n": 1})
	}
	mk("redirect_loopback", map[string]any{"webhook_url": redirector.URL + "/loop"})
	mk("redirect_metadata", map[string]any{"webhook_url": redirector.URL + "/metadata"})
	mk("delete", map[string]any{"webhook_url": echo.URL, "webhook_method": "DELETE"})
	mk("headers", map[string]any{"webhook_url": echo.URL, "webhook_headers": map[string]string{
		"Host": "metadata.google.internal", "Metadata-Flavor": "Google", "X-Google-Metadata-Request": "True",
		"Connection": "Upgrade", "Upgrade": "websocket", "Proxy-Authorization": "Basic eDp5", "X-Forwarded-For": "127.0.0.1",
		"Authorization": "Bearer tenant-own-token",
	}})
	e := &engine{finished: make(chan pipeline.Result, 100)}
	r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "redir", Hooks: pipeline.HookConfig{AllowLoopbackForTests: true, Timeout: 3 * time.Second}}, b.db, b.gen)
	d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: 4, Observer: chanObserver{e.finished}}, claimsIdentity{}, r)
	d.Start(ctx)
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	e.disps = append(e.disps, d)
	b.quiesce(ctx, t, e, b.user)

	byStage := map[string]row{}
	for _, x := range b.tree(ctx, t, b.user) {
		byStage[x.Stage] = x
		t.Logf("  %-18s → %s, output=%s, error_message=%q", x.Stage, x.Status, x.Output, x.ErrorMessage)
	}
	for _, k := range []string{"redirect_loopback", "redirect_metadata", "delete"} {
		require.Equal(t, "failed", byStage[k].Status, k)
		require.JSONEq(t, "null", string(byStage[k].Output), k)
	}
	require.Contains(t, byStage["redirect_loopback"].ErrorMessage, "HTTP 307")
	require.Contains(t, byStage["delete"].ErrorMessage, "not allowed")
	require.Zero(t, inside.hits.Load(), "the redirect target was reached")
	require.EqualValues(t, 2, redirector.hits.Load())
	require.Equal(t, "completed", byStage["headers"].Status)
	require.EqualValues(t, 1, echo.hits.Load(), "only the headers task reached the echo server (DELETE was refused)")
	echo.mu.Lock()
	got := echo.last
	echo.mu.Unlock()
	for _, h := range []string{"Metadata-Flavor", "X-Google-Metadata-Request", "Upgrade", "Proxy-Authorization", "X-Forwarded-For"} {
		require.Empty(t, got.Get(h), h)
	}
	require.Equal(t, "Bearer tenant-own-token", got.Get("Authorization"))
	t.Logf("redirects followed=0 (inside server requests=%d), DELETE sent=0, forbidden headers delivered=0", inside.hits.Load())
}

// latencyModel answers prompts containing SLOW after slow (the attacker's
// slow model call or hook) and the others after fast (an ordinary model
// call).
//
// It also watches fairness without a clock: each time an attacker call
// starts while the victim has started and not finished its tasks, it
// records how many attacker calls are then in flight (maxAttacker). A fair
// dispatcher never lets that exceed the attacker's share.
type latencyModel struct {
	slow, fast  time.Duration
	victimTasks int64

	mu                            sync.Mutex
	attackerInFlight, maxAttacker int
	victimStarted, victimDone     int64
}

func (m *latencyModel) Generate(ctx context.Context, req model.Request) (model.Response, error) {
	d := m.fast
	attacker := strings.Contains(req.Prompt, "SLOW")
	m.mu.Lock()
	if attacker {
		d = m.slow
		m.attackerInFlight++
		if m.victimStarted > 0 && m.victimDone < m.victimTasks {
			m.maxAttacker = max(m.maxAttacker, m.attackerInFlight)
		}
	} else {
		m.victimStarted++
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if attacker {
			m.attackerInFlight--
		} else {
			m.victimDone++
		}
		m.mu.Unlock()
	}()
	if d > 0 {
		t := time.NewTimer(d) // simulated model latency
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return model.Response{}, ctx.Err()
		}
	}
	out, _ := json.Marshal(map[string]any{"ok": true})
	return model.Response{Output: out, Usage: model.Usage{TotalTokens: 1}}, nil
}

// stageObserver closes done when want tasks of stage have finished, and
// full when the dispatcher runs `slots` tasks at once.
type stageObserver struct {
	stage string
	want  int64
	n     atomic.Int64
	done  chan struct{}
	slots int
	full  chan struct{}
	once  sync.Once
	fonce sync.Once
}

func (o *stageObserver) TaskFinished(_ pipeline.Result, stage string, _ time.Duration) {
	if stage == o.stage && o.n.Add(1) == o.want {
		o.once.Do(func() { close(o.done) })
	}
}

func (o *stageObserver) QueueDepth(_, running int) {
	if running >= o.slots {
		o.fonce.Do(func() { close(o.full) })
	}
}
func (*stageObserver) ClaimFailed(error) {}

// TestDrill13NoisyNeighbour: an attacker's many slow tasks against a
// victim's few fast ones, at the shape (concurrency 50, attacker
// 500 tasks, victim 20 tasks, so the victim's fair share of 25 slots holds
// all its tasks) with the slow call scaled from 25 s to 1.5 s to stay CI
// sized (set slow to 25*time.Second for the full run). The victim's time
// is printed quiet, under attack with the fair share, and under attack
// without it (FairShareFloor = Concurrency, i.e. the old dispatcher);
// the target is 2 × quiet + one slow-call latency. A second, scarcer shape
// (concurrency 10, attacker 100 tasks: the victim's 20 tasks exceed its
// share of 5) is printed for contrast, without a target.
func TestDrill13NoisyNeighbour(t *testing.T) { //nolint:paralleltest // timing: runs alone in its package
	const (
		concurrency = 50
		attackTasks = 500
		scarce      = 10 // concurrency of the contrast shape, with scarce*10 attacker tasks
		victimTasks = 20
		slow        = 1500 * time.Millisecond
		fast        = 250 * time.Millisecond // the victim's own model call (the quiet baseline was 0.67 s)
	)
	ctx := t.Context()

	// run returns the victim's time and the most attacker calls in flight
	// at an attacker start while the victim had work.
	run := func(label string, concurrency, attackTasks, floor int, attack bool) (time.Duration, int) {
		bb := setup(t)
		attacker := bb.user
		victim := dbtest.CreateUser(ctx, t, bb.pool)
		p := "nn-" + uuid.NewString()[:8] + "-"
		bb.templates(ctx, t, attacker, stage{id: p + "slow", key: "attack", prompt: "SLOW {{input.i}}", cfg: map[string]any{"cardinality": "1:1"}})
		bb.templates(ctx, t, victim, stage{id: p + "fast", key: "victim", prompt: "FAST {{input.i}}", cfg: map[string]any{"cardinality": "1:1"}})
		rows := func(n int) []map[string]any {
			out := make([]map[string]any, n)
			for i := range out {
				out[i] = map[string]any{"i": i}
			}
			return out
		}
		obs := &stageObserver{stage: "victim", want: victimTasks, done: make(chan struct{}), slots: concurrency, full: make(chan struct{})}
		gen := &latencyModel{slow: slow, fast: fast, victimTasks: victimTasks}
		r := pipeline.NewRunner(&pipeline.RunnerConfig{WorkerID: "nn-" + label}, bb.db, gen)
		d := pipeline.NewDispatcher(&pipeline.DispatcherConfig{Concurrency: concurrency, FairShareFloor: floor, Observer: obs}, claimsIdentity{}, r)
		d.Start(ctx)
		defer func() {
			stop, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_ = d.Stop(stop)
		}()
		if attack {
			bb.launch(ctx, t, attacker, p+"slow", rows(attackTasks)...)
			d.Notify(attacker)
			select {
			case <-obs.full: // the attacker holds every slot
			case <-time.After(30 * time.Second):
				t.Fatal("the attacker never filled the slots")
			}
		}
		start := time.Now()
		bb.launch(ctx, t, victim, p+"fast", rows(victimTasks)...)
		d.Notify(victim)
		select {
		case <-obs.done:
		case <-time.After(45 * time.Second):
			t.Fatalf("%s: the victim's tasks did not finish", label)
		}
		took := time.Since(start)
		gen.mu.Lock()
		defer gen.mu.Unlock()
		return took, gen.maxAttacker
	}
	quiet, _ := run("quiet", concurrency, attackTasks, 1, false)
	fair, fairMax := run("fair", concurrency, attackTasks, 1, true)
	unfair, unfairMax := run("unfair", concurrency, attackTasks, concurrency, true)
	share := (concurrency + 1) / 2 // two active users
	target := 2*quiet + slow
	t.Logf("noisy neighbour (concurrency %d, attacker %d tasks × %s, victim %d tasks × %s):", concurrency, attackTasks, slow, victimTasks, fast)
	t.Logf("  victim quiet baseline:                 %s", quiet.Round(time.Millisecond))
	t.Logf("  victim under attack, fair share:       %s (target ≤ 2 × quiet + one slow call = %s)", fair.Round(time.Millisecond), target.Round(time.Millisecond))
	t.Logf("  victim under attack, no fair share:    %s", unfair.Round(time.Millisecond))
	t.Logf("  attacker calls in flight at a new attacker call while the victim had work: fair share %d (share %d), no fair share %d",
		fairMax, share, unfairMax)
	sQuiet, _ := run("s-quiet", scarce, scarce*10, 1, false)
	sFair, sFairMax := run("s-fair", scarce, scarce*10, 1, true)
	sUnfair, _ := run("s-unfair", scarce, scarce*10, scarce, true)
	t.Logf("scarce slots (concurrency %d, attacker %d tasks × %s, victim %d tasks × %s): quiet %s, fair share %s, no fair share %s",
		scarce, scarce*10, slow, victimTasks, fast, sQuiet.Round(time.Millisecond), sFair.Round(time.Millisecond), sUnfair.Round(time.Millisecond))
	// Fairness is asserted structurally (timings on a shared CI machine are
	// figures, not pass/fail): while the victim had work, the attacker never
	// started a call beyond its share of the slots.
	require.LessOrEqual(t, fairMax, share, "the attacker started calls beyond its fair share while the victim waited")
	require.LessOrEqual(t, sFairMax, (scarce+1)/2, "scarce slots: the attacker started calls beyond its fair share while the victim waited")
	if fair > target {
		t.Logf("  note: the victim's time exceeded the target on this run (a loaded machine); fairness held structurally")
	}
}
