// Package handlers is the HTTP surface of the service, on Echo v4: the
// Supabase Database Webhook endpoint, the user API under /api/v1, and the
// operational endpoints (/healthz, /readyz, /metrics).
//
// Handlers are thin (STYLE §4): bind → validate → one call into supabase.DB
// (as the caller) or the Waker → respond. They never write an error body:
// they return an error and HTTPErrorHandler renders it as {"code","message"}
// (plus "request_id" on 5xx).
//
// Register lists every route and installs the common middleware (request id,
// request logging, panic recovery) and the error handler, so main only builds
// Deps, calls Register and starts the server. docs/openapi.yaml documents
// every route; a test keeps the two in step.
//
// Metrics holds the service's Prometheus metrics in a private registry and
// implements pipeline.Observer.
package handlers
