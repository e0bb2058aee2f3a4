package migrations

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ApplyForTest applies the given migrations instead of the embedded ones.
func ApplyForTest(ctx context.Context, pool *pgxpool.Pool, cfg *Config, all []Migration) (*Result, error) {
	return apply(ctx, pool, cfg, all)
}
