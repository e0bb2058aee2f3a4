package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// TestFreeTierSupabaseJS runs e2e/js/freetier.mjs: a free user without
// personal keys launches through submit_free_tier_tasks within the quota
// (set to 3 by the operator), is refused with QUOTA_EXCEEDED past it, reads
// its usage, and its tasks complete — on the operator's pool key only: the
// fake Gemini records the project of every call's key, and neither another
// user's personal key nor an operator key from configuration (none is set)
// serves them.
func TestFreeTierSupabaseJS(t *testing.T) {
	t.Parallel()
	freeTierFlow(t, false)
}

// TestFreeTierSupabaseJSOnUpgradedDatabase is the same flow on a database
// that had the original orchable schema and was upgraded in place, with the
// service on the PostgREST transport (the pool keys then come through
// PostgREST with the service key).
func TestFreeTierSupabaseJSOnUpgradedDatabase(t *testing.T) {
	t.Parallel()
	freeTierFlow(t, true)
}

func freeTierFlow(t *testing.T, original bool) {
	t.Helper()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is not installed: install Node.js 20 and run `npm ci --prefix e2e/js`")
	_, err = os.Stat(filepath.Join("js", "node_modules", "@supabase", "supabase-js", "package.json"))
	require.NoError(t, err, "e2e/js/node_modules is missing: run `npm ci --prefix e2e/js` (.ci/run does)")

	const poolKey, personalKey, quota = "AIzaE2E-free-pool-key", "AIzaE2E-someones-personal-key", 3
	s := newStack(t, stackOpts{
		InProcGemini: true, Original: original, Transport: map[bool]string{false: direct, true: postgrest}[original],
		GeminiKeys: map[string]string{poolKey: "proj-pool", personalKey: "proj-personal"},
		// No operator key: free tasks can only run on the pool's keys.
		Env: map[string]string{"SWEEP_INTERVAL": "200ms", "GEMINI_API_KEY": "", "GEMINI_API_KEY_PROJECT": ""},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, other, operator := s.createUser(), s.createUser(), s.createUser()
	_, err = s.db.Exec(ctx, `select public.set_free_tier_quota($1)`, quota)
	require.NoError(t, err)
	_, err = s.db.Exec(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted, pool_type) values ($1, 'free pool', $2, 'free_pool')`, operator, poolKey)
	require.NoError(t, err)
	_, err = s.db.Exec(ctx, `insert into public.user_api_keys (user_id, key_name, api_key_encrypted) values ($1, 'mine', $2)`, other, personalKey)
	require.NoError(t, err)
	configID, root := s.importBundle(u, localBundle("e2e-faults"))

	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "freetier.mjs")
	cmd.Dir = "js"
	cmd.Env = append(os.Environ(),
		"SUPABASE_URL="+s.restURL, "SUPABASE_ANON_KEY="+s.anonKey, "USER_ID="+u.String(), "USER_JWT="+s.userJWT(u),
		"OTHER_USER_ID="+other.String(), "TEMPLATE_ID="+root, "CONFIG_ID="+configID, "QUOTA=3")
	out, err := cmd.CombinedOutput()
	t.Logf("freetier.mjs: %s", strings.TrimSpace(string(out)))
	require.NoError(t, err, "freetier.mjs failed:\n%s", out)
	var sum struct {
		BatchID uuid.UUID `json:"batch_id"`
		Tasks   int       `json:"tasks"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &sum))
	require.Equal(t, quota-1, sum.Tasks)

	// Which key served each call: the pool key's project, every time.
	calls := s.gemini.Calls()
	require.Len(t, calls, quota-1, "one model call per free task")
	for _, c := range calls {
		require.Equal(t, "proj-pool", c.Project, "a free task was served by a key outside the free pool")
	}
	var n int
	require.NoError(t, s.db.QueryRow(ctx, `select count(*) from public.ai_tasks where batch_id = $1 and tier_source = 'free_pool' and status = 'completed'`, sum.BatchID).Scan(&n))
	require.Equal(t, quota-1, n)
}
