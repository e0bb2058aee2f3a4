-- History placeholder: a migration of the original orchable project (the
-- TypeScript + n8n system this service replaces) has this version. Existing
-- orchable databases record it in supabase_migrations.schema_migrations, and
-- both `supabase db push` and `orchable migrate` refuse a database whose
-- recorded versions are missing locally. This file makes the version known;
-- it changes nothing. On a new database it is recorded as applied. The
-- upgrade of an original database happens in the migrations that follow.
select 1;
