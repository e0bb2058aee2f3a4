// Package model calls the language model for a pipeline stage: Gemini through
// google.golang.org/genai with a durable, shared key pool, or an offline
// provider that needs no network.
//
// # The Generate shape
//
// Both [Client] (Gemini) and [Offline] implement
//
//	Generate(ctx context.Context, req model.Request) (model.Response, error)
//
// so a consumer declares its own one-method interface and does not import a
// concrete provider:
//
//	type Generator interface {
//		Generate(ctx context.Context, req model.Request) (model.Response, error)
//	}
//
// A [Request] carries the resolved model id and generation settings (see
// [ResolveSettings]), the rendered prompt, an optional system instruction and
// the stage's output_schema. A [Response] carries the validated JSON output
// (or {"result": text} for stages without a schema), token usage, the model
// version, the response id and the id of the key that was used (never the key
// itself).
//
// # Errors
//
// Failures are [*Error] values with a [Kind] and a [Retry] mode:
//
//   - RetryNever: fail the task now (safety block, MAX_TOKENS, retired model,
//     bad request, no key configured at all).
//   - RetryLater: reschedule the task; [Error.RetryAfter] is the server's
//     RetryInfo delay when it sent one (rate limits, 5xx, timeouts).
//   - RetryRegenerate: the model answered but the output was not valid JSON or
//     did not match the schema; the caller decides how many regenerations to
//     spend and may feed [Error.Message] back into the prompt.
//
// When every key is blocked, Generate returns a [*NoKeyError] (errors.Is
// [ErrNoKeyAvailable]) whose Until is the earliest time a key will be free, so
// the task is rescheduled rather than failed.
//
// # Keys
//
// [KeyPool] picks a key per call from the owner's user_api_keys (and
// optionally operator keys from configuration), groups keys by Google project
// because Gemini quotas are per project and model, limits requests and tokens
// per minute locally, and keeps health and blocks durable in api_key_health and
// api_key_project_blocks through a [KeyStore] ([PgStore] over pgx as the
// user, so RLS applies). Key material is encrypted at rest with [Cipher]:
// AES-256-GCM, each ciphertext bound to its row and owner ([KeyRow]), so a
// value copied to another row or user does not decrypt.
//
// API keys never appear in logs, errors or task data.
package model
