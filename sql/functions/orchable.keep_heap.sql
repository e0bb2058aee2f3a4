------------------------------------------------------------------------------
-- keep_heap: once per server process, make glibc's malloc keep the memory
-- a large call of the engine frees, instead of giving it back to the
-- kernel after every call.
--
-- A completion of hundreds of tasks builds a few MB in its memory
-- contexts. With glibc's defaults a backend returns that memory when the
-- call ends (the heap's free top past 128 kB is trimmed, blocks past
-- 128 kB are mapped and unmapped on their own), and takes it back from the
-- kernel on the next call, one page fault per 4 kB page: about 2,500 per
-- 1,000-task completion under load, a quarter of the server's CPU per
-- noop task on a machine where a fault costs 11 us (docs/performance.md,
-- twenty-eighth round).
--
-- glibc raises both thresholds by itself when a block larger than the
-- mapping threshold is freed (mallopt(3), "dynamic mmap threshold"): the
-- mapping threshold to that block's size and the trimming threshold to
-- twice it. So one 8 MB value made and dropped here sets them to 8 MB and
-- 16 MB for the rest of the process's life: 8 MB is PostgreSQL's largest
-- memory-context block, so every block a call allocates comes from the
-- heap, and the heap keeps up to 16 MB free between calls. What the
-- process holds is at most what it used at its peak (a 1,000-task call:
-- about 5 MB), never the 8 MB made here, which goes back at once. Another
-- allocator (musl) ignores it: 8 MB allocated and freed once.
--
-- The setting orchable.heap_kept marks the process (a session setting, so
-- it stays with the server process through a transaction pooler, as the
-- allocator's state does); rolled back with a failed call, the next large
-- call does it again.
------------------------------------------------------------------------------
create or replace function orchable.keep_heap() returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  if current_setting('orchable.heap_kept', true) is distinct from 'on' then
    perform length(repeat(' ', 8 * 1024 * 1024));
    perform set_config('orchable.heap_kept', 'on', false);
  end if;
end
$$;
