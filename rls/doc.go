// Package rls carries identity into the database so that Postgres Row Level Security can keep
// tenants apart (SPEC §3).
//
// It has four parts, each built from one [Config]:
//
//   - [Verifier] checks Supabase user JWTs: asymmetric keys (ES256, RS256) from the project's JWKS,
//     refreshed periodically and on an unknown kid, or the legacy HS256 secret when configured.
//     The algorithm is pinned to the key, so a token can never pick how it is verified.
//     [Verifier.Middleware] puts the verified [Claims] in the request context; read them with
//     [ClaimsFromContext] and the raw token (to forward to PostgREST) with [TokenFromContext].
//   - [Minter] mints short-lived user tokens for work that a database webhook started, so that
//     writes made on the task owner's behalf still go through RLS as that owner.
//   - [WebhookVerifier] authenticates Supabase database webhooks, either with a shared secret
//     header or with a Standard Webhooks signature; [WebhookVerifier.Middleware] wraps it for Echo.
//   - [ServiceCredentials] is the one place where the service-role (secret) key is loaded. It
//     bypasses RLS and is used only by the sweeper to find due work.
//
// Every rejection is an *apierror.Error (the service's one HTTP error type), which implements
// StatusCode() and describes the HTTP response the project's error handler must write, headers
// included (WWW-Authenticate on a 401). Tokens and secrets are never logged; secrets are held in
// [Secret], which prints as [redacted].
package rls
