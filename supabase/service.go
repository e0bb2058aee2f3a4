package supabase

import "encoding/json"

// ServiceIdentity is the service-role identity. It BYPASSES Row Level
// Security, so it is used for exactly three things, all by the sweeper:
// listing due work across tenants (ids and owners, never content:
// due_tasks), re-queueing expired leases (requeue_expired_leases) and folding
// batch progress (fold_batch_counters). Everything done on a user's behalf
// uses that user's identity instead. `grep -rn ServiceIdentity` lists every
// use.
//
// token is the credential for PostgREST: the secret key (sb_secret_…, which
// the Client must also send as its apikey) or the legacy service_role JWT.
// The direct transport needs no token.
func ServiceIdentity(token string) Identity {
	return Identity{Token: token, Claims: json.RawMessage(`{"role":"service_role"}`)}
}
