// Package attacks holds the permanent attack suite of SPEC §14: two signed-in
// users, A (the victim) and B (the attacker), on a real PostgreSQL with the
// migrations, B writing only what the grants and RLS let an ordinary
// PostgREST call write (any column of B's own rows, any RPC B may execute),
// plus the sweeper path through the real service loop (sweeper, dispatcher,
// runner). Each attack records a row of a table printed at the end
// (attack, path, expected, outcome); a failing row names the attack.
//
// The suite also replays the most dangerous attacks with the client-facing
// defences switched off (engine columns forged with the engine setting, as
// if the row trigger were bypassed), to show that the SQL engine itself
// never crosses tenants: defence in depth.
//
// There is no production code here; see docs/threat-model.md.
package attacks
