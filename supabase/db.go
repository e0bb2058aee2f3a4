package supabase

import (
	"context"
	"encoding/json"
)

// Identity is who a call acts as.
type Identity struct {
	// Token is the signed JWT, forwarded to PostgREST as the bearer token.
	// Empty means anonymous (PostgREST uses the anon role).
	Token string
	// Claims are the same token's claims as a JSON object. The direct
	// transport stores them in request.jwt.claims and takes the role from
	// their "role" claim (anon when absent). Empty means anonymous.
	Claims json.RawMessage
}

// DB is the engine's view of the database, implemented by *Client
// (PostgREST) and *Direct (pgx). See the package documentation.
type DB interface {
	// RPC calls public.<fn> with the named arguments in args (a JSON object)
	// and decodes the JSON result into out (nil to discard).
	RPC(ctx context.Context, id Identity, fn string, args any, out any) error
	// Select reads rows of public.<table> matching q and decodes the JSON
	// array (or, with q.Single, the one object) into out.
	Select(ctx context.Context, id Identity, table string, q Query, out any) error
}

// EncodedArgs is an RPC's arguments that encode themselves: a caller that
// builds large arguments often (the engine's completions) writes the JSON
// object itself instead of handing encoding/json a map to reflect over and
// the transport the body to read back for its keys.
type EncodedArgs interface {
	// EncodeArgs returns the arguments as one JSON object and its keys,
	// sorted. The transports send the body as it is: it must be valid JSON
	// and name exactly those keys.
	EncodeArgs() (body []byte, keys []string, err error)
}

type idempotentKey struct{}

// Idempotent marks the calls made with the returned context as safe to
// repeat, so an RPC is retried on transient errors like a GET is. Only use it
// for functions whose effect does not change when applied twice (reads,
// conditional state changes such as renew_leases).
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// IsIdempotent reports whether ctx was marked with Idempotent.
func IsIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}
