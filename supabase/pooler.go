package supabase

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolerMode is how a DATABASE_URL reaches PostgreSQL.
type PoolerMode string

// Pooler modes.
const (
	// PoolerNone is a direct connection (db.<ref>.supabase.co:5432, or any
	// PostgreSQL): every feature works.
	PoolerNone PoolerMode = "none"
	// PoolerSession is Supavisor's session mode (the pooler host, port
	// 5432): one server connection per client connection, so prepared
	// statements, LISTEN and session advisory locks work as on a direct
	// connection.
	PoolerSession PoolerMode = "session"
	// PoolerTransaction is a transaction-mode pooler (Supavisor or
	// PgBouncer, port 6543, or a URL with pgbouncer=true): consecutive
	// transactions of one client connection may run on different server
	// connections. Named prepared statements (pgx's statement cache) break,
	// LISTEN receives nothing, and a session advisory lock can be taken on
	// one server connection and released on another.
	PoolerTransaction PoolerMode = "transaction"
)

// TransactionPoolerPort is the port of Supabase's transaction-mode poolers
// (Supavisor, and the dedicated PgBouncer).
const TransactionPoolerPort = 6543

// DetectPooler reports what rawURL (a postgres:// URL or a keyword/value
// string) connects through: PoolerTransaction for port 6543 or
// pgbouncer=true (Prisma's flag, which Supabase's dashboard adds to the
// transaction pooler's string), PoolerSession for a *.pooler.supabase.com
// host on another port, else PoolerNone. pgbouncer=true marks a
// transaction pooler on any port; pgbouncer=false says port 6543 is not
// one. A string pgx cannot parse is
// PoolerNone (parsing it later reports the error).
func DetectPooler(rawURL string) PoolerMode {
	cfg, err := pgconn.ParseConfig(rawURL)
	if err != nil {
		return PoolerNone
	}
	pgbouncer, err := strconv.ParseBool(cfg.RuntimeParams["pgbouncer"])
	explicit := err == nil
	switch {
	case explicit && pgbouncer, !explicit && cfg.Port == TransactionPoolerPort:
		return PoolerTransaction
	case strings.HasSuffix(strings.ToLower(strings.TrimSuffix(cfg.Host, ".")), ".pooler.supabase.com"):
		return PoolerSession
	default:
		return PoolerNone
	}
}

// ParsePoolConfig parses rawURL into a pgxpool configuration safe for mode:
// it drops the pgbouncer parameter (PostgreSQL would refuse it as an unknown
// setting) and, for PoolerTransaction, turns off pgx's statement and
// description caches and sends every query with the extended protocol and
// unnamed statements (pgx.QueryExecModeExec: parameters typed by the server,
// still one round trip per pipelined batch), unless the URL chose
// default_query_exec_mode=simple_protocol or exec itself.
func ParsePoolConfig(rawURL string, mode PoolerMode) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, err
	}
	delete(cfg.ConnConfig.RuntimeParams, "pgbouncer")
	if mode == PoolerTransaction {
		switch cfg.ConnConfig.DefaultQueryExecMode {
		case pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol:
		default:
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
		cfg.ConnConfig.StatementCacheCapacity = 0
		cfg.ConnConfig.DescriptionCacheCapacity = 0
	}
	return cfg, nil
}

// TransactionPoolerError explains why an operation that needs a session
// (migrations, LISTEN) refuses a transaction-mode pooler.
type TransactionPoolerError struct {
	// Op is what was refused.
	Op string
	// Host is the host of the refused URL (no credentials).
	Host string
}

func (e *TransactionPoolerError) Error() string {
	session := "the session pooler (the same host on port 5432)"
	if e.Host != "" {
		session = fmt.Sprintf("the session pooler (%s)", net.JoinHostPort(e.Host, "5432"))
	}
	return fmt.Sprintf("%s needs a session: DATABASE_URL points at a transaction-mode pooler (port %d or pgbouncer=true), "+
		"where a session advisory lock can be taken and released on different server connections. "+
		"Use the direct connection (postgres://postgres:…@db.<ref>.supabase.co:5432/postgres) or %s, "+
		"with pgbouncer=true removed", e.Op, TransactionPoolerPort, session)
}

// PoolerHost returns the host of rawURL for messages, or "".
func PoolerHost(rawURL string) string {
	cfg, err := pgconn.ParseConfig(rawURL)
	if err != nil {
		return ""
	}
	return cfg.Host
}
