package model

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/model/geminitest"
	"github.com/orchable/orchable/supabase/dbtest"
)

// testKEK encrypts every key the DB tests insert, so EncryptStoredKeys in
// TestEncryptStoredKeys (which sees the whole table) leaves them alone.
func testKEK() KEK { return kek("test-kek", 7) }

type dbKey struct {
	secret, project, pref string
	priority              int
}

// insertKeys stores keys for user as the table owner, encrypted with testKEK.
func insertKeys(ctx context.Context, t *testing.T, db *pgxpool.Pool, user uuid.UUID, keys ...dbKey) []uuid.UUID {
	t.Helper()
	c, err := NewCipher([]KEK{testKEK()})
	require.NoError(t, err)
	var ids []uuid.UUID
	for i, k := range keys {
		id := uuid.New()
		enc, err := c.Encrypt(k.secret, KeyRow{ID: id, UserID: user})
		require.NoError(t, err)
		insertRow(ctx, t, db, id, user, "key-"+string(rune('a'+i)), enc, k)
		ids = append(ids, id)
	}
	return ids
}

// insertRow stores one user_api_keys row with the value given as is.
func insertRow(ctx context.Context, t *testing.T, db *pgxpool.Pool, id, user uuid.UUID, name, stored string, k dbKey) {
	t.Helper()
	_, err := db.Exec(ctx, `insert into public.user_api_keys (id, user_id, key_name, api_key_encrypted, project, model_preference, priority)
values ($1, $2, $3, $4, nullif($5, ''), coalesce(nullif($6, ''), 'gemini-test'), $7)`,
		id, user, name, stored, k.project, k.pref, max(k.priority, 1))
	require.NoError(t, err)
}

func storedValue(ctx context.Context, t *testing.T, db *pgxpool.Pool, id uuid.UUID) string {
	t.Helper()
	var stored string
	require.NoError(t, db.QueryRow(ctx, `select api_key_encrypted from public.user_api_keys where id = $1`, id).Scan(&stored))
	return stored
}

func TestPgStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, db)
	other := dbtest.CreateUser(ctx, t, db)
	ids := insertKeys(ctx, t, db, user,
		dbKey{secret: "AIza-one", project: "proj-a", priority: 1},
		dbKey{secret: "AIza-two", project: "proj-a", priority: 2},
		dbKey{secret: "AIza-three", priority: 3},
	)
	otherIDs := insertKeys(ctx, t, db, other, dbKey{secret: "AIza-other", project: "proj-a"})
	store := NewPgStore(db)
	task := uuid.New()

	keys, err := store.UsableKeys(ctx, user, "gemini-test")
	require.NoError(t, err)
	require.Len(t, keys, 3)
	for _, k := range keys {
		require.True(t, IsEncrypted(k.Ciphertext))
		require.True(t, k.BlockedUntil.IsZero())
	}

	// A per-minute 429 on one key blocks its whole project for that model.
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	require.NoError(t, store.RecordOutcome(ctx, user, Outcome{
		KeyID: ids[0], Model: "gemini-test", Result: OutcomeRateLimited, ErrorCode: string(KindRateLimited),
		ErrorMessage: "rate limit", BlockedUntil: until, Tokens: 0, TaskID: task, Latency: 12 * time.Millisecond,
	}))
	keys, err = store.UsableKeys(ctx, user, "gemini-test")
	require.NoError(t, err)
	blocked := map[uuid.UUID]time.Time{}
	for _, k := range keys {
		blocked[k.ID] = k.ProjectBlockedUntil
	}
	require.True(t, until.Equal(blocked[ids[0]]))
	require.True(t, until.Equal(blocked[ids[1]]), "same project, same block")
	require.True(t, blocked[ids[2]].IsZero(), "a key without project is its own project")
	otherModel, err := store.UsableKeys(ctx, user, "gemini-other")
	require.NoError(t, err)
	for _, k := range otherModel {
		require.True(t, k.ProjectBlockedUntil.IsZero(), "blocks are per model")
	}

	// Success resets failures; invalid deactivates; failures only count.
	require.NoError(t, store.RecordOutcome(ctx, user, Outcome{KeyID: ids[0], Model: "gemini-test", Result: OutcomeSuccess, Tokens: 42, TaskID: task}))
	require.NoError(t, store.RecordOutcome(ctx, user, Outcome{KeyID: ids[1], Model: "gemini-test", Result: OutcomeFailure, ErrorCode: string(KindServer), ErrorMessage: "503"}))
	require.NoError(t, store.RecordOutcome(ctx, user, Outcome{KeyID: ids[2], Model: "gemini-test", Result: OutcomeInvalid, ErrorCode: string(KindInvalidKey), Reason: "the API key was rejected"}))

	var failures, total, ok int
	require.NoError(t, db.QueryRow(ctx, `select consecutive_failures, total_requests, successful_requests from public.api_key_health where user_api_key_id = $1`, ids[0]).Scan(&failures, &total, &ok))
	require.Equal(t, []int{0, 2, 1}, []int{failures, total, ok})
	require.NoError(t, db.QueryRow(ctx, `select consecutive_failures, failed_requests from public.api_key_health where user_api_key_id = $1`, ids[1]).Scan(&failures, &total))
	require.Equal(t, []int{0, 1}, []int{failures, total}, "a server error is not the key's fault")
	var active bool
	var reason string
	require.NoError(t, db.QueryRow(ctx, `select is_active, deactivated_reason from public.user_api_keys where id = $1`, ids[2]).Scan(&active, &reason))
	require.False(t, active)
	require.Equal(t, "the API key was rejected", reason)
	var logged int
	require.NoError(t, db.QueryRow(ctx, `select count(*) from public.api_key_usage_log where user_id = $1`, user).Scan(&logged))
	require.Equal(t, 4, logged)
	require.NoError(t, db.QueryRow(ctx, `select count(*) from public.api_key_usage_log where task_id = $1 and job_id = $1::text and latency_ms = 12`, task).Scan(&logged))
	require.Equal(t, 1, logged)

	keys, err = store.UsableKeys(ctx, user, "gemini-test")
	require.NoError(t, err)
	require.Len(t, keys, 2, "the invalid key is no longer usable")

	// RLS: another user neither sees nor records against these keys, and
	// the user's block does not leak into the other user's keys.
	otherKeys, err := store.UsableKeys(ctx, other, "gemini-test")
	require.NoError(t, err)
	require.Len(t, otherKeys, 1)
	require.Equal(t, otherIDs[0], otherKeys[0].ID)
	require.True(t, otherKeys[0].ProjectBlockedUntil.IsZero())
	err = store.RecordOutcome(ctx, other, Outcome{KeyID: ids[0], Model: "gemini-test", Result: OutcomeSuccess})
	require.ErrorContains(t, err, "not found")
	err = store.RecordOutcome(ctx, user, Outcome{KeyID: ids[0], Model: "gemini-test", Result: "bogus"})
	require.ErrorContains(t, err, "unknown outcome")
}

// TestTwoInstancesShareBlocks: two pools (two service instances) on one
// database; a 429 seen by one blocks the project for the other.
func TestTwoInstancesShareBlocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, db)
	insertKeys(ctx, t, db, user,
		dbKey{secret: "AIza-one", project: "proj-a"},
		dbKey{secret: "AIza-two", project: "proj-a"},
	)
	// Real time: the database and the pools compare blocks against it.
	srv := geminitest.New(geminitest.Config{Keys: map[string]string{"AIza-one": "proj-a", "AIza-two": "proj-a"}})
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)

	newInstance := func() *Client {
		cfg := Config{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: tr}, KEKs: []KEK{testKEK()}}
		pool, err := NewKeyPool(&cfg, NewPgStore(db), nil)
		require.NoError(t, err)
		client, err := NewClient(&cfg, pool)
		require.NoError(t, err)
		return client
	}
	one, two := newInstance(), newInstance()
	req := Request{UserID: user, Prompt: "hello", Settings: Settings{Model: "gemini-test"}}

	resp, err := two.Generate(ctx, req)
	require.NoError(t, err, "instance two works before the block")
	require.NotEmpty(t, resp.KeyID)

	srv.Enqueue(geminitest.Reply{Kind: geminitest.ReplyError, Status: 429, StatusText: "RESOURCE_EXHAUSTED", Details: []map[string]any{
		{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "600s"},
	}})
	_, err = one.Generate(ctx, req)
	var nk *NoKeyError
	require.ErrorAs(t, err, &nk)
	before := srv.Stats().Requests

	_, err = two.Generate(ctx, req)
	require.ErrorAs(t, err, &nk, "instance two must see instance one's block")
	require.WithinDuration(t, time.Now().Add(600*time.Second), nk.Until, time.Minute)
	require.Equal(t, before, srv.Stats().Requests, "no request sent to the blocked project")
}

func TestEncryptStoredKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, db)
	old, err := NewCipher([]KEK{kek("old-kek", 3)})
	require.NoError(t, err)
	testC, err := NewCipher([]KEK{testKEK()})
	require.NoError(t, err)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()}
	oldV2, err := old.Encrypt("AIza-v2-under-old-kek", KeyRow{ID: ids[3], UserID: user})
	require.NoError(t, err)
	stored := []string{
		"AIza-plain-one",
		"AIza-plain-two",
		encryptV1(t, old, "AIza-v1-under-old-kek"),
		oldV2,
		encryptV1(t, testC, "AIza-v1-under-active-kek"),
	}
	want := []string{"AIza-plain-one", "AIza-plain-two", "AIza-v1-under-old-kek", "AIza-v2-under-old-kek", "AIza-v1-under-active-kek"}
	for i, id := range ids {
		insertRow(ctx, t, db, id, user, "legacy-"+string(rune('a'+i)), stored[i], dbKey{})
	}

	// Before the rewrite the pool reads plaintext, v1 and v2 values alike.
	c, err := NewCipher([]KEK{testKEK(), kek("old-kek", 3)})
	require.NoError(t, err)
	pool, err := NewKeyPool(&Config{KEKs: []KEK{testKEK(), kek("old-kek", 3)}}, NewPgStore(db), c)
	require.NoError(t, err)
	seen := map[string]bool{}
	for range ids {
		lease, err := pool.Acquire(ctx, user, "gemini-test", 1)
		require.NoError(t, err)
		seen[lease.Key.apiKey] = true
		require.NoError(t, lease.Release(ctx, uuid.Nil, Usage{}, nil))
	}
	require.Len(t, seen, len(ids), "every legacy value is usable: %v", seen)

	// The active KEK is the shared test KEK, so keys other tests inserted
	// (v2 under it) are left alone and the counts below are exact.
	res, err := EncryptStoredKeys(ctx, db, c)
	require.NoError(t, err)
	require.Equal(t, 2, res.Encrypted)
	require.Equal(t, 3, res.Reencrypted, "v1 under the old KEK, v2 under the old KEK, v1 under the active KEK")

	for i, id := range ids {
		s := storedValue(ctx, t, db, id)
		require.True(t, strings.HasPrefix(s, "enc:v2:test-kek:"), s)
		require.NotContains(t, s, "AIza")
		plain, err := c.Decrypt(s, KeyRow{ID: id, UserID: user})
		require.NoError(t, err)
		require.Equal(t, want[i], plain)
	}

	res, err = EncryptStoredKeys(ctx, db, c)
	require.NoError(t, err)
	require.Zero(t, res.Encrypted+res.Reencrypted, "a second run changes nothing")

	// A KEK set that cannot read a row leaves it as it is and names it,
	// without key material.
	wrong, err := NewCipher([]KEK{kek("newer-kek", 5)})
	require.NoError(t, err)
	before := storedValue(ctx, t, db, ids[0])
	res, err = EncryptStoredKeys(ctx, db, wrong)
	require.NoError(t, err)
	unreadable := map[uuid.UUID]error{}
	for _, u := range res.Unreadable {
		unreadable[u.ID] = u.Err
	}
	for _, id := range ids {
		require.ErrorIs(t, unreadable[id], ErrDecrypt)
		require.NotContains(t, unreadable[id].Error(), "AIza")
	}
	require.Equal(t, before, storedValue(ctx, t, db, ids[0]))

	// Rotation: a new active KEK rewrites every row; once it has, the
	// previous KEK can be retired. This runs in a transaction rolled back
	// at once: it rewrites the whole table, and the package's other tests
	// read their keys with the test KEK.
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rotated, err := NewCipher([]KEK{kek("rotated-kek", 8), testKEK()})
	require.NoError(t, err)
	res, err = EncryptStoredKeys(ctx, tx, rotated)
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.Reencrypted, len(ids))
	newOnly, err := NewCipher([]KEK{kek("rotated-kek", 8)})
	require.NoError(t, err)
	for i, id := range ids {
		var s string
		require.NoError(t, tx.QueryRow(ctx, `select api_key_encrypted from public.user_api_keys where id = $1`, id).Scan(&s))
		require.True(t, strings.HasPrefix(s, "enc:v2:rotated-kek:"), s)
		plain, err := newOnly.Decrypt(s, KeyRow{ID: id, UserID: user})
		require.NoError(t, err)
		require.Equal(t, want[i], plain)
	}
	require.NoError(t, tx.Rollback(ctx))
}

// TestPoolRejectsMovedCiphertexts: an attacker who can write
// api_key_encrypted copies a victim's v2 ciphertext into a row of their own,
// into another row of the victim, or relabels its key id. The pool skips
// those rows with a warning and keeps serving the user's genuine keys; it
// never hands out the victim's key for the attacker's work.
func TestPoolRejectsMovedCiphertexts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := dbtest.Pool(t)
	victim := dbtest.CreateUser(ctx, t, db)
	attacker := dbtest.CreateUser(ctx, t, db)
	victimIDs := insertKeys(ctx, t, db, victim, dbKey{secret: "AIza-victim", priority: 5})
	victimCT := storedValue(ctx, t, db, victimIDs[0])
	body := strings.TrimPrefix(victimCT, "enc:v2:test-kek:")
	require.NotEqual(t, victimCT, body)

	// Into the attacker's own row, as their only key.
	stolen := uuid.New()
	insertRow(ctx, t, db, stolen, attacker, "stolen", victimCT, dbKey{})
	// Into another row of the victim (with a better priority), and
	// relabelled to a second KEK id that has the same key bytes.
	moved, relabelled := uuid.New(), uuid.New()
	insertRow(ctx, t, db, moved, victim, "moved", victimCT, dbKey{priority: 1})
	insertRow(ctx, t, db, relabelled, victim, "relabelled", "enc:v2:test-kek-alias:"+body, dbKey{priority: 1})

	logs := &bytes.Buffer{}
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: logs, mu: &mu}, nil))
	keks := []KEK{testKEK(), {ID: "test-kek-alias", Key: testKEK().Key}}
	pool, err := NewKeyPool(&Config{KEKs: keks, Archetype: &baseservice.Archetype{Logger: logger}}, NewPgStore(db), nil)
	require.NoError(t, err)

	_, err = pool.Acquire(ctx, attacker, "gemini-test", 1)
	var me *Error
	require.ErrorAs(t, err, &me)
	require.Equal(t, KindNoKey, me.Kind)
	require.Contains(t, me.Message, "cannot be decrypted")

	for range 3 {
		lease, err := pool.Acquire(ctx, victim, "gemini-test", 1)
		require.NoError(t, err, "the victim's genuine key still works")
		require.Equal(t, victimIDs[0].String(), lease.Key.ID)
		require.Equal(t, "AIza-victim", lease.Key.apiKey)
		require.NoError(t, lease.Release(ctx, uuid.Nil, Usage{}, nil))
	}

	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, id := range []uuid.UUID{stolen, moved, relabelled} {
		require.Contains(t, out, id.String())
	}
	require.Contains(t, out, `"level":"WARN"`)
	require.Contains(t, out, "another row, owner or key id")
	require.NotContains(t, out, "AIza")
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
