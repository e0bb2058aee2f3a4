// Package supabase is the data path: every read and write the engine does on
// a user's behalf goes through a DB, carrying that user's identity to
// PostgreSQL so Row Level Security applies.
//
// # One interface, two transports
//
//	type DB interface {
//		RPC(ctx context.Context, id Identity, fn string, args any, out any) error
//		Select(ctx context.Context, id Identity, table string, q Query, out any) error
//	}
//
// RPC calls public.<fn> with named arguments (PostgREST POST /rest/v1/rpc/<fn>);
// args is anything that marshals to a JSON object whose keys are the argument
// names (a struct with json tags, a map, json.RawMessage, or an EncodedArgs
// that writes its own body and keys). out receives the
// JSON result exactly as PostgREST encodes it: a scalar function gives a JSON
// scalar, a json/jsonb function its value, a set-returning or table function a
// JSON array, a function returning one composite a JSON object, and a void
// function null (out is left untouched). Pass a nil out to discard the result.
//
// Select reads a table (PostgREST GET /rest/v1/<table>?...) with a Query:
// columns, filters, order, limit/offset, and Single (exactly one row, else
// ErrNotFound for zero rows or ErrNotSingular for more).
//
// Both transports are safe for concurrent use by many users at once: the
// identity travels with each call, never on the shared struct.
//
//   - Client speaks the PostgREST protocol over net/http (Supabase's Data API,
//     <SUPABASE_URL>/rest/v1). It forwards Identity.Token as the bearer token,
//     except a new-format API key (sb_secret_…, sb_publishable_…), which is
//     not a JWT: it travels in the apikey header alone, where the gateway
//     takes the key's role from it. Queries work on PostgREST v12 and later
//     (is not null is sent as not.is.null; is.not_null needs v13).
//   - Direct talks to PostgreSQL through a pgx pool and does what PostgREST
//     does for each request, in ONE network round trip: begin; set the role
//     from the "role" claim (anon/authenticated/service_role only) and
//     request.jwt.claims, and apply the settings PostgREST applies (the
//     authenticator's, then the role's, from ALTER ROLE … SET — on Supabase
//     statement_timeout 8 s for authenticated, 3 s for anon, lock_timeout
//     8 s — then the function's own statement_timeout); call; commit. It does not verify Identity.Token: it
//     trusts Identity.Claims, so only pass identities that came from a
//     verified or freshly minted token.
//
// # Errors
//
// Both transports return *Error for anything the database or PostgREST
// refused, with the HTTP status PostgREST would use (the mapping lives in
// one table, statusFor, shared by both; the PostgREST test server keeps its
// own copy of PostgREST's table, so a test can catch a mismatch), so callers branch with errors.Is on
// the sentinels (ErrNotFound, ErrConflict, ErrForbidden, ErrJWT,
// ErrUnavailable, …) and never import pgx or net/http details.
//
// # Retries
//
// GET requests (Select) are retried on transient errors (ErrUnavailable,
// ErrSerialization) with exponential backoff and full jitter. RPCs are
// retried only when the caller marks the call idempotent with Idempotent(ctx).
// A Client response larger than Config.MaxResponseBytes fails with
// ErrResponseTooLarge and is not retried.
//
// # Why not postgrest-go
//
// supabase-community/postgrest-go (v0.0.11/v0.0.12) does not fit a service
// acting for many users at once:
//
//   - One bearer token per client: SetAuthToken mutates headers shared by
//     every caller of that client, so two concurrent users race (a data race
//     in v0.0.11; still one token per client in v0.0.12). Here the token
//     travels with each call in Identity and is never stored on Client.
//   - No custom *http.Client: no timeouts, transport tuning or tracing, and
//     its transport mutates requests. Here Config.HTTPClient, Config.Timeout
//     and context cancellation bound every call.
//   - RPC errors come back as results: Rpc returns the body as a string and
//     ignores the HTTP status. Here every non-2xx answer is an *Error.
//   - Error statuses are dropped: errors become "(code) message" without
//     the status, details or hint, and a gateway's HTML page becomes "error
//     parsing error response", so 401/403/406/409/5xx cannot be told apart
//     for retries. Here *Error keeps all of them and matches the sentinels.
//
// It also never quotes filter values (in.(…) with reserved characters).
// See platform-facts §D.
package supabase
