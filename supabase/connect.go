package supabase

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool to rawURL (DATABASE_URL) for the one-shot commands
// and checks that it answers. Behind a transaction pooler it uses unnamed
// statements and no statement cache (ParsePoolConfig).
func Connect(ctx context.Context, rawURL string) (*pgxpool.Pool, error) {
	if rawURL == "" {
		return nil, errors.New("DATABASE_URL is required")
	}
	cfg, err := ParsePoolConfig(rawURL, DetectPooler(rawURL))
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("error connecting to DATABASE_URL: %w", err)
	}
	return pool, nil
}
