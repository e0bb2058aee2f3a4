package migrations_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/migrations"
	"github.com/orchable/orchable/supabase/dbtest"
)

// Where ai_tasks is published to Supabase Realtime, its replica identity is
// the unique index on (id, status): Realtime's payload.old carries the old
// status (docs/performance.md, "Design and profile") without the whole old
// row in WAL. Without the publication the table keeps the default identity.
func TestRealtimeReplicaIdentity(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	identity := func(t *testing.T, published bool) (string, []string) {
		t.Helper()
		pool := emptyDB(ctx, t)
		if published {
			_, err := pool.Exec(ctx, "create publication supabase_realtime")
			require.NoError(t, err)
		}
		_, err := migrations.Migrate(ctx, pool, &migrations.Config{Local: true})
		require.NoError(t, err)
		var ident string
		require.NoError(t, pool.QueryRow(ctx, "select relreplident::text from pg_class where oid = 'public.ai_tasks'::regclass").Scan(&ident))
		rows, err := pool.Query(ctx, `select a.attname::text from pg_index i
			cross join lateral unnest(i.indkey) with ordinality k(attnum, ord)
			join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
			where i.indrelid = 'public.ai_tasks'::regclass and i.indisreplident order by k.ord`)
		require.NoError(t, err)
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return ident, cols
	}
	t.Run("Published", func(t *testing.T) {
		t.Parallel()
		ident, cols := identity(t, true)
		require.Equal(t, "i", ident)
		require.Equal(t, []string{"id", "status"}, cols)
	})
	t.Run("NotPublished", func(t *testing.T) {
		t.Parallel()
		ident, cols := identity(t, false)
		require.Equal(t, "d", ident)
		require.Empty(t, cols)
	})
}

// The wake-up trigger fires once for a task that becomes runnable again
// (here the front end's retry, which writes pending) and names its owner;
// an insert of a running task, a completion and an update that leaves a
// task runnable send nothing.
func TestNotifyOnRequeueOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.Pool(t)
	user := dbtest.CreateUser(ctx, t, pool)
	listener, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer listener.Release()
	_, err = listener.Exec(ctx, "listen orchable_wakeup")
	defer func() { _, _ = listener.Exec(context.WithoutCancel(ctx), "unlisten *") }()
	require.NoError(t, err)

	// Another test's commits may notify on this database too: only payloads
	// naming this test's user count, up to a sentinel sent after the write
	// (notifications arrive in commit order).
	mine := func() int {
		t.Helper()
		sentinel := "sentinel-" + uuid.NewString()
		_, err := pool.Exec(ctx, "select pg_notify('orchable_wakeup', $1)", sentinel)
		require.NoError(t, err)
		n := 0
		for {
			note, err := listener.Conn().WaitForNotification(ctx)
			require.NoError(t, err)
			switch note.Payload {
			case sentinel:
				return n
			case user.String():
				n++
			}
		}
	}
	asUser := func(sql string, args ...any) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		dbtest.AsUser(ctx, t, tx, user)
		_, err = tx.Exec(ctx, sql, args...)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
	}
	var id uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "insert into public.ai_tasks (user_id, status) values ($1, 'processing') returning id", user).Scan(&id))
	require.Zero(t, mine(), "an insert of a running task notified")

	asUser("update public.ai_tasks set status = 'completed' where id = $1", id)
	require.Zero(t, mine(), "a completion notified")
	asUser("update public.ai_tasks set status = 'pending' where id = $1", id) // stored as plan
	require.Equal(t, 1, mine(), "a requeue did not notify once")
	asUser("update public.ai_tasks set error_message = 'x' where id = $1", id) // still plan
	require.Zero(t, mine(), "an update of a runnable task notified")
}
