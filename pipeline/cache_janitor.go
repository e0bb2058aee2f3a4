package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/orchable/orchable/baseservice"
	"github.com/orchable/orchable/supabase"
)

// CacheDeleter deletes a cached content from Gemini with one of the owner's
// keys of its project; *model.Client satisfies it.
type CacheDeleter interface {
	DeleteCache(ctx context.Context, userID uuid.UUID, project, modelID, name string) error
}

// CacheJanitorConfig configures a CacheJanitor. Zero values take the defaults.
type CacheJanitorConfig struct {
	// Interval between sweeps. Default 1m.
	Interval time.Duration
	// Limit is the most batches released per sweep. Default 100.
	Limit int
	// Archetype is the logger and the clock (main's one archetype). Nil:
	// discard logs, wall clock.
	Archetype *baseservice.Archetype
}

// CacheJanitor deletes the explicit cached contents of batches that no
// longer need them: finished, cancelled or idle (no task left to run), and
// the rows of caches that expired. As the service identity it lists only
// batch ids and owners (gemini_caches_due); it releases the rows as each
// owner (release_gemini_caches) and deletes each cached content from Gemini
// with a key of its project. A cached content that cannot be deleted expires
// with its TTL.
type CacheJanitor struct {
	baseservice.BaseService

	cfg     *CacheJanitorConfig
	db      supabase.DB
	service supabase.Identity
	ids     IdentitySource
	del     CacheDeleter

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewCacheJanitor builds a janitor.
func NewCacheJanitor(cfg *CacheJanitorConfig, db supabase.DB, service supabase.Identity, ids IdentitySource, del CacheDeleter) *CacheJanitor {
	c := *cfg
	c.Interval = cmp.Or(c.Interval, time.Minute)
	c.Limit = cmp.Or(c.Limit, 100)
	return baseservice.Init(c.Archetype, &CacheJanitor{cfg: &c, db: db, service: service, ids: ids, del: del})
}

// CacheSweep reports one sweep.
type CacheSweep struct {
	Batches  int // batches released
	Released int // gemini_caches rows removed
	Deleted  int // cached contents deleted from Gemini (or already gone)
	Failed   int // deletions that failed (they expire with their TTL)
}

// Sweep releases what is due now.
func (j *CacheJanitor) Sweep(ctx context.Context) (CacheSweep, error) {
	var due []struct {
		UserID      uuid.UUID `json:"user_id"`
		BatchID     uuid.UUID `json:"batch_id"`
		OnlyExpired bool      `json:"only_expired"`
	}
	var out CacheSweep
	if err := j.db.RPC(supabase.Idempotent(ctx), j.service, "gemini_caches_due", map[string]any{"p_limit": j.cfg.Limit}, &due); err != nil {
		return out, fmt.Errorf("error listing cached contents due for release: %w", err)
	}
	for _, d := range due {
		id, err := j.ids.Identity(ctx, d.UserID)
		if err != nil {
			return out, err
		}
		var released []struct {
			CacheName string  `json:"cache_name"`
			ModelID   *string `json:"model_id"`
			Project   *string `json:"project"`
			Expired   bool    `json:"expired"`
		}
		args := map[string]any{"p_batch_id": d.BatchID, "p_only_expired": d.OnlyExpired}
		if err := j.db.RPC(ctx, id, "release_gemini_caches", args, &released); err != nil {
			return out, fmt.Errorf("error releasing cached contents of batch %s: %w", d.BatchID, err)
		}
		out.Batches++
		for _, r := range released {
			out.Released++
			if r.Expired || r.Project == nil || r.ModelID == nil {
				continue // gone with its TTL (or the original's row: no project to delete it with)
			}
			if err := j.del.DeleteCache(ctx, d.UserID, *r.Project, *r.ModelID, r.CacheName); err != nil {
				out.Failed++
				j.Logger.WarnContext(ctx, "pipeline: cached content not deleted; it expires with its TTL",
					slog.String("batch_id", d.BatchID.String()), slog.String("error", err.Error()))
				continue
			}
			out.Deleted++
		}
	}
	return out, nil
}

// Start sweeps every Interval until Stop.
func (j *CacheJanitor) Start(ctx context.Context) {
	ctx, j.cancel = context.WithCancel(ctx)
	j.done = make(chan struct{})
	go func() {
		defer close(j.done)
		t := j.Time.NewTicker(j.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := j.Sweep(ctx); err != nil && ctx.Err() == nil {
					j.Logger.ErrorContext(ctx, "pipeline: cache janitor sweep failed", slog.String("error", err.Error()))
				}
			}
		}
	}()
}

// Stop ends the loop and waits for it.
func (j *CacheJanitor) Stop() {
	j.stopOnce.Do(func() {
		if j.cancel != nil {
			j.cancel()
			<-j.done
		}
	})
}
