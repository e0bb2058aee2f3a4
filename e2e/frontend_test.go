package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/model/geminitest"
)

// TestFrontendSupabaseJS runs e2e/js/frontend.mjs: supabase-js (from npm)
// does what the React front end does — insert a batch and root tasks, fix
// up root_task_id, poll progress with the .or() filter, read the batch with
// the FK-hinted embed, approve (with and without an edit), retry a failed
// task — while the service processes the work; a second user's client sees
// and changes nothing, then launches the first user's published pipeline on
// their own account.
func TestFrontendSupabaseJS(t *testing.T) {
	t.Parallel()
	frontendFlow(t, stackOpts{InProcGemini: true, Env: map[string]string{"SWEEP_INTERVAL": "200ms"}})
}

// frontendFlow is TestFrontendSupabaseJS on a stack made with opts.
func frontendFlow(t *testing.T, opts stackOpts) {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is not installed: install Node.js 20 and run `npm ci --prefix e2e/js`")
	_, err = os.Stat(filepath.Join("js", "node_modules", "@supabase", "supabase-js", "package.json"))
	require.NoError(t, err, "e2e/js/node_modules is missing: run `npm ci --prefix e2e/js` (.ci/run does)")

	s := newStack(t, opts)
	const marker = "[[drill:fail_once]]"
	var mu sync.Mutex
	failed := false
	s.gemini.SetHandler(func(c geminitest.Call) (geminitest.Reply, bool) {
		if !strings.Contains(c.Prompt, marker) {
			return geminitest.Reply{}, false
		}
		mu.Lock()
		defer mu.Unlock()
		if failed {
			return geminitest.Reply{}, false
		}
		failed = true
		return geminitest.Reply{Kind: geminitest.ReplySafety}, true
	})
	u, other := s.createUser(), s.createUser()
	configID, root := s.importBundle(u, localBundle("e2e-review"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Node 20 has WebSocket (which realtime-js requires at construction) only
	// behind this flag; Node 22+ accepts it and has it anyway.
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "frontend.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(),
		"SUPABASE_URL="+s.restURL, "SUPABASE_ANON_KEY="+s.anonKey, "USER_ID="+u.String(),
		"USER_JWT="+s.userJWT(u), "OTHER_JWT="+s.userJWT(other), "OTHER_USER_ID="+other.String(), "TEMPLATE_ID="+root, "CONFIG_ID="+configID, "FAIL_MARKER="+marker)
	if opts.Original {
		cmd.Env = append(cmd.Env, "HUB_ASSET_ID="+originalHubAsset)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("frontend.mjs: %s", strings.TrimSpace(string(out)))
	require.NoError(t, err, "frontend.mjs failed:\n%s", out)

	var batch uuid.UUID
	require.NoError(t, s.db.QueryRow(context.Background(), "select id from public.task_batches where created_by = $1", u).Scan(&batch))
	s.waitSettled(30*time.Second, batch)
	rep := s.checkTree(batch)
	s.requireTree(rep)
	require.Equal(t, map[string]int{"draft": 2, "publish": 2}, rep.ByStage)
	require.Equal(t, map[string]int{"completed": 4}, rep.ByStatus)
}
