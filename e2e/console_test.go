package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/supabase/dbtest"
)

// fakeAuth is the part of Supabase Auth the console uses: the password and
// refresh-token grants of /auth/v1/token and /auth/v1/logout, with CORS as
// the platform answers it. Tokens are signed with the stack's secret and
// carry iss <url>/auth/v1, so the service verifies them like real ones.
type fakeAuth struct {
	mu       sync.Mutex
	users    map[string]fakeUser  // email → user
	refresh  map[string]uuid.UUID // refresh token → user
	url      string
	sign     func(jwt.MapClaims) string
	password int // successful password grants
	refreshs int // successful refresh-token grants
}

type fakeUser struct {
	id       uuid.UUID
	password string
}

func (f *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Allow-Headers", "apikey, authorization, content-type, x-client-info")
	w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/auth/v1/logout":
		w.WriteHeader(http.StatusNoContent)
		return
	case r.Method != http.MethodPost || r.URL.Path != "/auth/v1/token":
		http.NotFound(w, r)
		return
	}
	var body struct {
		Email        string `json:"email"`
		Password     string `json:"password"`
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	defer f.mu.Unlock()
	var id uuid.UUID
	email := ""
	switch r.URL.Query().Get("grant_type") {
	case "password":
		u, ok := f.users[body.Email]
		if !ok || u.password != body.Password {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":400,"error_code":"invalid_credentials","msg":"Invalid login credentials"}`))
			return
		}
		id, email = u.id, body.Email
		f.password++
	case "refresh_token":
		var ok bool
		if id, ok = f.refresh[body.RefreshToken]; !ok {
			http.Error(w, `{"error_code":"refresh_token_not_found","msg":"Invalid Refresh Token"}`, http.StatusBadRequest)
			return
		}
		delete(f.refresh, body.RefreshToken)
		f.refreshs++
		for e, u := range f.users {
			if u.id == id {
				email = e
			}
		}
	default:
		http.Error(w, "unsupported grant", http.StatusBadRequest)
		return
	}
	now := time.Now()
	exp := now.Add(time.Hour)
	tok := f.sign(jwt.MapClaims{
		"sub": id.String(), "role": "authenticated", "aud": "authenticated", "iss": f.url + "/auth/v1",
		"iat": now.Unix(), "exp": exp.Unix(), "email": email, "session_id": uuid.NewString(), "aal": "aal1",
	})
	rt := "rt-" + randHex(12)
	f.refresh[rt] = id
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": 3600, "expires_at": exp.Unix(),
		"refresh_token": rt, "user": map[string]any{"id": id.String(), "email": email},
	})
}

// browserPath finds Chromium, or skips (outside CI) or fails (in CI).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("Chromium is not installed (apt-get install -y chromium); .ci/run installs it and CI runs this test")
	}
	require.FailNow(t, "Chromium is not installed, and CI is set: .ci/run must install the chromium package")
	return ""
}

// TestConsoleInBrowser drives the console in headless Chromium against the
// real binary: a user signs in with email and password (Supabase Auth's
// REST grant, faked), imports a bundle, launches a batch from pasted JSON
// lines, approves a task with an edit that fails and then passes the stage's
// output schema (the successor's input carries the edit), rejects another
// with notes and regenerates it (the model sees the notes), retries a failed
// task once its cause is gone, and watches the batch reach 100 %. A second
// user then sees none of it. Screenshots go to CONSOLE_SCREENSHOTS (or the
// test's temporary directory).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	chrome := browserPath(t)
	shots := screenshotDir(t)

	auth := &fakeAuth{users: map[string]fakeUser{}, refresh: map[string]uuid.UUID{}}
	authSrv := httptest.NewServer(auth)
	t.Cleanup(authSrv.Close)
	auth.url = authSrv.URL

	s := newStack(t, stackOpts{InProcGemini: true, Env: map[string]string{"SUPABASE_URL": authSrv.URL, "SWEEP_INTERVAL": "200ms"}})
	auth.sign = s.sign
	alice, bob := s.createUser(), s.createUser()
	auth.users["alice@example.test"] = fakeUser{id: alice, password: "alice-pw"}
	auth.users["bob@example.test"] = fakeUser{id: bob, password: "bob-pw"}
	// One of Alice's keys, inactive (so the pool never uses it) and blocked:
	// the keys page shows its health and never its material.
	var keyID uuid.UUID
	require.NoError(t, s.db.QueryRow(context.Background(), `insert into public.user_api_keys (user_id, key_name, api_key_encrypted, is_active, deactivated_reason)
		values ($1, 'alice-main', 'AIza-SECRET-MATERIAL', false, 'paused by alice') returning id`, alice).Scan(&keyID))
	_, err := s.db.Exec(context.Background(), `insert into public.api_key_health (user_api_key_id, user_id, blocked_until, block_reason, last_used_at, total_requests, failed_requests)
		values ($1, $2, now() + interval '1 hour', 'quota exhausted', now() - interval '5 minutes', 12, 3)`, keyID, alice)
	require.NoError(t, err)

	// The model fails "gamma" while failGamma is set (a permanent error), and
	// records the prompts it sees.
	var mu sync.Mutex
	failGamma := true
	s.gemini.SetHandler(func(c geminitest.Call) (geminitest.Reply, bool) {
		mu.Lock()
		defer mu.Unlock()
		if failGamma && strings.Contains(c.Prompt, "gamma") {
			return geminitest.Reply{Kind: geminitest.ReplyError, Status: 400, StatusText: "INVALID_ARGUMENT", Message: "scripted failure for gamma"}, true
		}
		return geminitest.Reply{}, false
	})

	b := newBrowser(t, chrome, shots)
	bctx := b.ctx
	b.run(chromedp.Navigate(s.svcURL() + "/console/"))

	// `orchable serve` has no dev sign-in.
	resp, err := httpClient.Post(s.svcURL()+"/console/dev/session", "application/json", nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotEqual(t, http.StatusOK, resp.StatusCode)
	devSignIn, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`fetch('config.json').then(r => r.json()).then(c => c.dev_sign_in)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.False(t, devSignIn)

	// Sign in with a wrong password first: the error is shown.
	b.run(chromedp.WaitVisible(chromedp.CSS("#signin-email")))
	b.shot("01-signin")
	b.signIn("alice@example.test", "wrong")
	b.waitJS(`document.querySelector('.signin .error')?.textContent.includes('Invalid login credentials')`, "the sign-in error")
	b.signIn("alice@example.test", "alice-pw")
	b.waitJS(`document.querySelector('#batch-list .empty') !== null`, "the empty batches list")
	b.shot("02-batches-empty")

	// A session about to expire is refreshed with its refresh token (after
	// a reload, as a returning visitor's would be).
	b.eval(`(() => { const k = 'orchable.console.session', s = JSON.parse(localStorage.getItem(k)); s.expires_at = Date.now() + 5000; localStorage.setItem(k, JSON.stringify(s)); return 'ok' })()`)
	b.run(chromedp.Reload())
	b.waitJS(`document.querySelector('#batch-list .empty') !== null`, "the batches list after the refresh")
	require.Equal(t, 1, auth.grants(func(f *fakeAuth) int { return f.refreshs }))

	// Import the bundle through the page.
	bundle := localBundle("e2e-review")
	b.goTo("#/launch")
	b.run(chromedp.WaitVisible(chromedp.CSS("#import-files")),
		chromedp.SetUploadFiles(chromedp.CSS("#import-files"), []string{
			filepath.Join(bundle, "orchestration.json"), filepath.Join(bundle, "prompts", "draft.md"), filepath.Join(bundle, "prompts", "publish.md"),
		}))
	b.click("#import-submit")
	b.waitJS(`document.body.textContent.includes('Imported: 2 stage(s).') && document.querySelector('#launch-pipeline').selectedOptions[0]?.textContent === 'E2E: reviewed draft'`, "the import")

	// Launch three rows as JSON lines.
	b.setValue("#launch-rows", `{"topic": "alpha"}`+"\n"+`{"topic": "beta"}`+"\n"+`{"topic": "gamma"}`)
	b.run(chromedp.SetValue(chromedp.CSS("#launch-name"), "Console batch"))
	b.waitJS(`document.querySelector('#launch-parsed').textContent.includes('3 row(s) ready') && !document.querySelector('#launch-submit').disabled`, "the parsed rows")
	b.shot("03-launch")
	b.click("#launch-submit")
	b.waitJS(`location.hash.startsWith('#/batch/')`, "the batch page")
	hash := b.eval(`location.hash`)
	batchID := uuid.MustParse(strings.TrimPrefix(hash, "#/batch/"))

	// Two drafts wait for approval, gamma's failed.
	b.waitJS(`document.querySelector('#batch-pct')?.parentElement.textContent.includes('2 awaiting approval · 1 failed')`, "2 awaiting and 1 failed")
	b.waitJS(`document.querySelectorAll('#graph svg g.node').length === 2 && document.querySelector('#tasks .tree [data-task]') !== null`, "the graph and the tree")
	b.shot("04-batch-waiting")
	draft := func(topic string) uuid.UUID {
		var id uuid.UUID
		require.NoError(t, s.db.QueryRow(context.Background(), `select id from public.ai_tasks where batch_id = $1 and stage_key = 'draft' and input_data->>'topic' = $2`, batchID, topic).Scan(&id))
		return id
	}
	alpha, beta, gamma := draft("alpha"), draft("beta"), draft("gamma")

	// Approve alpha with an edit: an edit that breaks the schema is refused
	// in the page, a valid one is sent.
	b.goTo("#/task/" + alpha.String())
	b.run(chromedp.WaitVisible(chromedp.CSS(`[data-action="approve"]`)))
	b.click("#edit-box summary")
	b.setValue("#edit-output", `{"title": 42}`)
	b.waitJS(`document.querySelector('#edit-problems').textContent.includes('$.title: expected string, got integer') && document.querySelector('[data-action="approve-edited"]').disabled`, "the schema problems")
	b.shot("05-task-edit-invalid")
	b.setValue("#edit-output", `{"title": "EDITED IN THE CONSOLE", "body": "Reviewed by a person."}`)
	b.run(chromedp.SetValue(chromedp.CSS("#edit-notes"), "tightened the title"))
	b.waitJS(`!document.querySelector('[data-action="approve-edited"]').disabled`, "a valid edit")
	b.click(`[data-action="approve-edited"]`)
	b.waitJS(`document.querySelector('#task-edited')?.textContent.includes('EDITED IN THE CONSOLE') && document.querySelector('#children [data-task]') !== null`, "the approved task with its successor")
	succ := b.eval(`document.querySelector('#children [data-task]').dataset.task`)
	b.goTo("#/task/" + succ)
	b.waitJS(`document.querySelector('#task-input')?.textContent.includes('EDITED IN THE CONSOLE')`, "the successor's input carrying the edit")
	b.shot("06-successor-input")
	var succInput string
	require.NoError(t, s.db.QueryRow(context.Background(), `select input_data::text from public.ai_tasks where parent_task_id = $1`, alpha).Scan(&succInput))
	require.Contains(t, succInput, "EDITED IN THE CONSOLE")

	// Reject beta and regenerate it with notes; the model sees the notes.
	b.goTo("#/task/" + beta.String())
	b.run(chromedp.WaitVisible(chromedp.CSS("#reject-reason")), chromedp.SetValue(chromedp.CSS("#reject-reason"), "Shorter, please: NOTES-FOR-BETA"))
	b.click(`[data-action="regenerate"]`)
	waitFor(t, 20*time.Second, 50*time.Millisecond, "beta regenerated with the notes", func() (bool, string) {
		for _, c := range s.gemini.Calls() {
			if strings.Contains(c.Prompt, "beta") && strings.Contains(c.Prompt, "NOTES-FOR-BETA") {
				return true, ""
			}
		}
		return false, "no model call with the notes yet"
	})

	// Retry gamma once its cause is gone.
	mu.Lock()
	failGamma = false
	mu.Unlock()
	b.goTo("#/batch/" + batchID.String())
	b.run(chromedp.WaitVisible(chromedp.CSS("#task-filter")), chromedp.SetValue(chromedp.CSS("#task-filter"), "failed"))
	b.eval(`String(document.querySelector('#task-filter').dispatchEvent(new Event('change')))`)
	b.waitJS(fmt.Sprintf(`document.querySelector('#tasks [data-task="%s"]') !== null`, gamma), "gamma in the failed list")
	b.shot("07-batch-failed-filter")
	b.goTo("#/task/" + gamma.String())
	b.waitJS(`document.querySelector('#task-error')?.textContent.includes('scripted failure')`, "gamma's error")
	b.shot("08-task-failed")
	b.eval(`String(window.confirm = () => true)`)
	b.click(`[data-action="retry"]`)

	// The approval queue: beta (regenerated) and gamma (retried) arrive;
	// approve both from the queue.
	b.goTo("#/approvals")
	b.waitJS(fmt.Sprintf(`document.querySelector('#approvals tr[data-task="%s"]') !== null && document.querySelector('#approvals tr[data-task="%s"]') !== null`, beta, gamma), "beta and gamma in the approval queue")
	b.shot("09-approvals")
	for _, id := range []uuid.UUID{beta, gamma} {
		b.click(fmt.Sprintf(`#approvals tr[data-task="%s"] [data-action="approve"]`, id))
		b.waitJS(fmt.Sprintf(`document.querySelector('#approvals tr[data-task="%s"]') === null`, id), "the approved task leaving the queue")
	}

	// The batch reaches 100 %.
	b.goTo("#/batch/" + batchID.String())
	b.waitJS(`document.querySelector('#batch-pct')?.dataset.pct === '100' && document.querySelector('h1 .badge')?.textContent === 'completed'`, "the batch at 100 %")
	b.click(fmt.Sprintf(`[data-task="%s"] .toggle`, alpha))
	b.waitJS(fmt.Sprintf(`document.querySelector('[data-task="%s"]') !== null`, succ), "the tree expanded")
	b.shot("10-batch-complete")
	s.waitSettled(20*time.Second, batchID)
	require.Equal(t, map[string]int{"completed": 6}, s.statusCounts(batchID))

	// A page still loading when the user moves on must not draw over the
	// next one (this test once failed so: the task page's reload after
	// "regenerate" arrived after the batch page was shown). The page holds
	// the task's request back until the batch page is up, lets it through,
	// and marks when its answer has been handled (a timer queued while the
	// answer is parsed runs after every step that follows from it).
	b.eval(`(() => {
		const f = window.fetch, parse = JSON.parse;
		window.__restore = () => { window.fetch = f; JSON.parse = parse; };
		window.__hold = true; window.__held = null; window.__staleDone = false;
		window.fetch = (u, o) => {
			if (!window.__hold || !String(u).startsWith('/api/v1/tasks/')) return f(u, o);
			window.__hold = false;
			return new Promise((res, rej) => {
				window.__held = () => f(u, o).then(async (r) => {
					const body = Object.assign(await r.json(), { __stale: true });
					res(new Response(JSON.stringify(body), { status: r.status, headers: { 'Content-Type': 'application/json' } }));
				}, rej);
			});
		};
		JSON.parse = (text, ...rest) => {
			const v = parse(text, ...rest);
			if (v && v.__stale) setTimeout(() => { window.__staleDone = true; }, 0);
			return v;
		};
		return 'ok';
	})()`)
	b.goTo("#/task/" + alpha.String())
	b.waitJS(`window.__held !== null`, "the task page's request held back")
	b.goTo("#/batch/" + batchID.String())
	b.waitJS(`document.querySelector('#task-filter') !== null`, "the batch page")
	b.eval(`(window.__held(), 'released')`)
	b.waitJS(`window.__staleDone === true`, "the late task answer handled")
	require.Equal(t, "batch page kept", b.eval(`document.querySelector('#task-filter') !== null && document.querySelector('#task-actions') === null ? 'batch page kept' : 'task page drawn over it'`))
	b.eval(`(window.__restore(), 'restored')`)

	// The batches list and the keys page.
	b.goTo("#/batches")
	b.waitJS(fmt.Sprintf(`document.querySelector('[data-batch="%s"] .stages [data-stage="publish"]') !== null`, batchID), "the batch in the list with its stages")
	b.shot("11-batches")
	b.goTo("#/keys")
	b.waitJS(`document.querySelector('#keys tr[data-key="alice-main"]')?.textContent.includes('quota exhausted') || document.querySelector('#keys tr[data-key="alice-main"]')?.textContent.includes('paused by alice')`, "the key's health")
	page := b.eval(`document.documentElement.outerHTML`)
	require.NotContains(t, page, "SECRET-MATERIAL")
	b.shot("12-keys")

	// Phone width.
	b.run(chromedp.EmulateViewport(390, 844))
	b.goTo("#/batch/" + batchID.String())
	b.waitJS(`document.querySelector('#batch-pct')?.dataset.pct === '100'`, "the batch page at phone width")
	b.shot("13-phone-batch")
	b.run(chromedp.EmulateViewport(1280, 800))

	// Bob sees none of it.
	b.click("#sign-out")
	b.run(chromedp.WaitVisible(chromedp.CSS("#signin-email")))
	b.signIn("bob@example.test", "bob-pw")
	b.waitJS(`document.querySelector('#batch-list .empty') !== null && document.querySelector('#who-name').textContent === 'bob@example.test'`, "Bob's empty batches list")
	b.goTo("#/batch/" + batchID.String())
	b.waitJS(`document.querySelector('.error')?.textContent.includes('not_found')`, "Alice's batch not found for Bob")
	b.shot("14-bob-batch-not-found")
	b.goTo("#/task/" + alpha.String())
	b.waitJS(`document.querySelector('.error')?.textContent.includes('not_found')`, "Alice's task not found for Bob")
	b.goTo("#/approvals")
	b.waitJS(`document.querySelector('#approvals .empty') !== null`, "Bob's empty approval queue")
	b.goTo("#/launch")
	b.waitJS(`document.querySelector('#launch-pipeline').textContent.includes('No pipelines yet')`, "no pipelines for Bob")
	b.goTo("#/keys")
	b.waitJS(`document.querySelector('#keys .empty') !== null`, "no keys for Bob")
	page = b.eval(`document.documentElement.outerHTML`)
	require.NotContains(t, page, "alice")
	require.Equal(t, 2, auth.grants(func(f *fakeAuth) int { return f.password }))
	t.Logf("console screenshots in %s", shots)
}

// grants reads a counter of f under its lock.
func (f *fakeAuth) grants(read func(*fakeAuth) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return read(f)
}

// newBrowser starts headless Chromium at 1280×800 for the test.
func newBrowser(t *testing.T, chrome, shots string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	// The first action starts the browser on bctx (no timeout on it); the
	// later ones get their own timeouts (see browser.run).
	require.NoError(t, chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800)))
	return &browser{t: t, ctx: bctx, shots: shots}
}

// screenshotDir is CONSOLE_SCREENSHOTS, or the test's temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// browser runs chromedp actions and fails the test with what it waited for.
type browser struct {
	t     *testing.T
	ctx   context.Context //nolint:containedctx // chromedp keeps the browser tab in its context
	shots string
}

// run runs actions, each call within 30 s.
func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// click clicks the first element matching sel with the browser's mouse
// events. The console redraws a view when its data refreshes, which can
// replace the element between finding it and clicking it; the DevTools
// protocol then answers "Could not find node with given id" (CI saw it on
// the batch page's tree toggle). The click is then made again on the
// element matching now, within the 30 s of a call: a replaced element has
// not been clicked, as the mouse events follow the node's lookup.
func (b *browser) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	for {
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err != nil && strings.Contains(err.Error(), "node with given id") && ctx.Err() == nil {
			continue
		}
		require.NoError(b.t, err, "clicking %s", sel)
		return
	}
}

// eval evaluates a JavaScript expression that gives a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, "evaluating %s", expr)
	return v
}

// waitJS waits until the expression is truthy (polled in the page).
func (b *browser) waitJS(expr, what string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(25*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText.slice(0, 2000)`))
		b.shot("failed-" + strings.NewReplacer(" ", "-", "'", "", "%", "").Replace(what))
		require.FailNowf(b.t, "browser wait failed", "waiting for %s: %v\npage: %s", what, err, text)
	}
}

// goTo changes the console's route (a hash change in the same document).
func (b *browser) goTo(hash string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`location.hash = %q`, hash))
}

// setValue sets a field's value and fires its input event.
func (b *browser) setValue(sel, value string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q; el.dispatchEvent(new Event('input')); return 'ok' })()`, sel, value))
}

func (b *browser) signIn(email, password string) {
	b.t.Helper()
	b.run(chromedp.SetValue(chromedp.CSS("#signin-email"), email), chromedp.SetValue(chromedp.CSS("#signin-password"), password))
	b.click("#signin-submit")
}

// shot saves a full-page PNG screenshot.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	_ = os.WriteFile(filepath.Join(b.shots, name+".png"), buf, 0o600)
}

// TestConsoleDevSignIn runs `orchable dev` (the embedded default that
// `make run` starts) and signs in to its console as the demo user without a
// password: the demo batch is there, finished, with its three-stage graph.
func TestConsoleDevSignIn(t *testing.T) {
	t.Parallel()
	chrome := browserPath(t)
	shots := screenshotDir(t)
	admin := dbtest.AdminURL()
	name := "e2e_dev_" + randHex(6)
	dbURL, err := replaceDB(admin, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(cctx, admin); err == nil {
			_, _ = c.Exec(cctx, "drop database if exists "+name+" with (force)")
			_ = c.Close(cctx)
		}
	})
	addr := freeAddr(t)
	dev := startProc(t, t.TempDir(), "orchable-dev", bin.orchable, []string{"dev", "--rows", "2"}, []string{"DATABASE_URL=" + dbURL, "ORCHABLE_ADDR=" + addr})
	consoleURL := ""
	waitFor(t, 60*time.Second, 50*time.Millisecond, "orchable dev to serve", func() (bool, string) {
		if !dev.running() {
			b, _ := os.ReadFile(dev.log)
			require.FailNowf(t, "orchable dev exited", "%v\n%s", dev.err, b)
		}
		b, _ := os.ReadFile(dev.log)
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "console   "); ok {
				consoleURL, _, _ = strings.Cut(rest, " ")
			}
		}
		return consoleURL != "" && strings.Contains(string(b), "serving; Ctrl-C"), "not yet"
	})
	require.Equal(t, "http://localhost:"+addr[strings.LastIndex(addr, ":")+1:]+"/console/", consoleURL)

	b := newBrowser(t, chrome, shots)
	b.run(chromedp.Navigate(consoleURL), chromedp.WaitVisible(chromedp.CSS("#dev-signin")))
	b.click("#dev-signin")
	b.waitJS(`document.querySelector('#batch-list [data-batch]')?.textContent.includes('100% done') && document.querySelector('#who-name').textContent === 'dev@orchable.local'`, "the demo batch, finished")
	b.shot("20-dev-batches")
	b.click("#batch-list [data-batch] a")
	b.waitJS(`document.querySelectorAll('#graph svg g.node').length === 3 && document.querySelector('#graph svg').textContent.includes('1:N') && document.querySelector('#graph svg').textContent.includes('N:1') && document.querySelector('#batch-pct')?.dataset.pct === '100'`, "the demo pipeline's graph")
	b.click("#tasks .toggle")
	b.waitJS(`document.querySelectorAll('#tasks .tree ul [data-task]').length > 0`, "a mapper's designer children")
	b.shot("21-dev-batch")

	// The page's cost while open on a finished batch: count the API
	// requests it makes over four progress polls (~10 s).
	t0 := b.eval(`String(performance.now())`)
	b.waitJS(`performance.getEntriesByType('resource').filter(e => e.startTime > `+t0+` && e.name.includes('max_age=')).length >= 4`, "four progress polls")
	rate := b.eval(`(() => { const es = performance.getEntriesByType('resource').filter(e => e.startTime > ` + t0 + ` && e.name.includes('/api/v1/'));
		const span = (es[es.length - 1].startTime - ` + t0 + `) / 1000; return es.length + ' requests in ' + span.toFixed(1) + ' s = ' + (es.length / span).toFixed(2) + ' requests/s' })()`)
	t.Logf("console batch page, finished batch, one viewer: %s", rate)
}

// TestConsoleLargeBatch opens a 10,000-task batch (and 2,500 tasks waiting
// for approval) in the console: the batch page, its first page of tasks,
// the next page, a filtered list and the approval queue all come up in
// pages, without reading the whole batch.
func TestConsoleLargeBatch(t *testing.T) {
	t.Parallel()
	chrome := browserPath(t)
	shots := screenshotDir(t)
	auth := &fakeAuth{users: map[string]fakeUser{}, refresh: map[string]uuid.UUID{}}
	authSrv := httptest.NewServer(auth)
	t.Cleanup(authSrv.Close)
	auth.url = authSrv.URL
	s := newStack(t, stackOpts{InProcGemini: true, Env: map[string]string{"SUPABASE_URL": authSrv.URL}})
	auth.sign = s.sign
	carol := s.createUser()
	auth.users["carol@example.test"] = fakeUser{id: carol, password: "carol-pw"}
	configID, _ := s.importBundle(carol, localBundle("e2e-review"))

	// 10,000 finished or waiting tasks (none runnable, so the service
	// leaves them alone): 2,500 roots waiting for approval, 2,500 failed,
	// 5,000 completed.
	ctx := context.Background()
	var batchID uuid.UUID
	require.NoError(t, s.db.QueryRow(ctx, `insert into public.task_batches (name, status, created_by, orchestrator_config_id)
		values ('Ten thousand', 'processing', $1, $2) returning id`, carol, configID).Scan(&batchID))
	_, err := s.db.Exec(ctx, `insert into public.ai_tasks (user_id, batch_id, stage_key, step_number, status, input_data, output_data, error_message, started_at, completed_at, total_token_count)
		select $1, $2, case when g % 4 = 3 then 'publish' else 'draft' end, case when g % 4 = 3 then 2 else 1 end,
		  (array['generated', 'failed', 'completed', 'completed'])[1 + g % 4]::public.ai_task_status,
		  jsonb_build_object('topic', 'row ' || g), case when g % 4 <> 1 then jsonb_build_object('title', 't' || g, 'body', repeat('x', 50)) end,
		  case when g % 4 = 1 then 'scripted failure ' || g end, now() - interval '1 minute', now(), 42
		from generate_series(0, 9999) g`, carol, batchID)
	require.NoError(t, err)

	b := newBrowser(t, chrome, shots)
	b.run(chromedp.Navigate(s.svcURL()+"/console/"), chromedp.WaitVisible(chromedp.CSS("#signin-email")))
	b.signIn("carol@example.test", "carol-pw")
	b.waitJS(`document.querySelector('[data-batch]') !== null`, "the batch in the list")
	start := time.Now()
	b.goTo("#/batch/" + batchID.String())
	b.waitJS(`document.querySelector('#batch-pct')?.parentElement.textContent.includes('10,000 tasks') && document.querySelectorAll('#tasks .tree > li').length === 50 && document.querySelectorAll('#graph svg g.node').length === 2`, "the first page of the 10,000-task batch")
	t.Logf("10,000-task batch page: progress, graph and the first 50 tasks in %s", time.Since(start).Round(time.Millisecond))
	b.shot("30-large-batch")
	b.click(`h1 ~ .actions [data-action="pause"]`)
	b.waitJS(`document.querySelector('h1 .badge')?.textContent === 'paused' && document.querySelector('[data-action="resume"]') !== null`, "the batch paused")
	b.click(`[data-action="resume"]`)
	b.waitJS(`document.querySelector('h1 .badge')?.textContent !== 'paused' && document.querySelector('[data-action="pause"]') !== null`, "the batch resumed")
	b.click("#tasks > div > .more button")
	b.waitJS(`document.querySelectorAll('#tasks .tree > li').length === 100`, "the second page of tasks")
	b.run(chromedp.SetValue(chromedp.CSS("#task-filter"), "failed"))
	b.eval(`String(document.querySelector('#task-filter').dispatchEvent(new Event('change')))`)
	b.waitJS(`document.querySelectorAll('#tasks .tree > li').length === 50 && [...document.querySelectorAll('#tasks [data-task]')].every(r => r.dataset.status === 'failed')`, "a page of failed tasks")
	b.goTo("#/approvals")
	b.waitJS(`document.querySelectorAll('#approvals tr[data-task]').length === 50 && document.body.textContent.includes('Next →')`, "a page of the approval queue")
	b.shot("31-large-approvals")

	// Reject one waiting task with a reason.
	var waiting uuid.UUID
	require.NoError(t, s.db.QueryRow(ctx, `select id from public.ai_tasks where batch_id = $1 and status = 'generated' limit 1`, batchID).Scan(&waiting))
	b.goTo("#/task/" + waiting.String())
	b.run(chromedp.WaitVisible(chromedp.CSS("#reject-reason")), chromedp.SetValue(chromedp.CSS("#reject-reason"), "off topic"))
	b.click(`[data-action="reject"]`)
	b.waitJS(`document.querySelector('h1 .badge')?.textContent === 'failed' && document.querySelector('#task-error')?.textContent.includes('rejected by reviewer: off topic')`, "the rejected task")

	// A large output starts collapsed.
	var big uuid.UUID
	require.NoError(t, s.db.QueryRow(ctx, `insert into public.ai_tasks (user_id, batch_id, stage_key, step_number, status, input_data, output_data)
		values ($1, $2, 'draft', 1, 'completed', '{"topic": "big"}', jsonb_build_object('title', 'big', 'body', repeat('lorem ipsum ', 4000))) returning id`, carol, batchID).Scan(&big))
	b.goTo("#/task/" + big.String())
	b.waitJS(`document.querySelector('details:not([open]) > summary')?.textContent.startsWith('Show output (') && document.querySelector('#task-output').closest('details')?.open === false && !document.querySelector('#task-output').checkVisibility()`, "the large output collapsed")

	// The page's CSV reader and schema validator, in the page.
	rows, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`import('./rows.js').then(m => JSON.stringify(m.parseRows('topic,grade\n"fractions, decimals",6\n"say ""hi""",7\n')))`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": [{"topic": "fractions, decimals", "grade": "6"}, {"topic": "say \"hi\"", "grade": "7"}], "problems": []}`, rows)
	problems, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`import('./schema.js').then(m => m.validate(
		{type: "object", required: ["n", "tags"], additionalProperties: false, properties: {n: {type: "integer", minimum: 5}, tags: {type: "array", maxItems: 1, items: {enum: ["a", "b"]}}}},
		{n: 4.5, tags: ["a", "c"], extra: true}))`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"$.n: expected integer, got number", "$.tags: must have at most 1 items", `$.tags[1]: must be one of "a", "b"`, `$: property "extra" is not allowed`,
	}, problems)
}
