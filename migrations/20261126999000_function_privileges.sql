-- Last word on function privileges: whatever earlier migrations created, no
-- function in public or orchable is executable by anon or by PUBLIC. (Hosted
-- Supabase grants EXECUTE on new functions to anon through default
-- privileges; this undoes that for our schema.) Functions meant for users
-- are granted to authenticated explicitly by the migration that creates them.
revoke execute on all functions in schema public from public, anon;
revoke execute on all functions in schema orchable from public, anon;
