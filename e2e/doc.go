// Package e2e holds orchable's end-to-end tests and reliability drills. They
// build the real binaries (orchable, the PostgREST-protocol test server and
// the fake Gemini server), run them as separate processes on loopback
// against a fresh PostgreSQL database per test, and drive them the way
// Supabase (Database Webhooks) and the React front end (supabase-js, see
// e2e/js) do. docs/reliability.md lists the guarantees and the drills that
// prove them.
package e2e
