// The React front end's Supabase flow (reference/frontend-contract.md §1.1,
// §1.2, §2), done with supabase-js against the PostgREST test server while
// orchable processes the work. Run by e2e/frontend_test.go; prints one JSON
// summary line, exits non-zero on the first failed expectation.
import { createClient } from '@supabase/supabase-js'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`missing env ${k}`)
  return v
}
const url = env('SUPABASE_URL')
const anon = env('SUPABASE_ANON_KEY')
const userId = env('USER_ID')
const templateId = env('TEMPLATE_ID')
const configId = env('CONFIG_ID')
const failTag = env('FAIL_MARKER')

const client = (jwt) => createClient(url, anon, {
  global: { headers: { Authorization: `Bearer ${jwt}` } },
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
})
const sb = client(env('USER_JWT'))
const other = client(env('OTHER_JWT'))

function check(cond, msg) { if (!cond) throw new Error(msg) }
function must({ data, error }, what) {
  if (error) throw new Error(`${what}: ${error.code} ${error.message}`)
  return data
}
const sleepTick = (ms) => new Promise((r) => setTimeout(r, ms)) // the front end polls on a timer too

async function poll(what, fn, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await fn()
    if (last.ok) return last
    await sleepTick(100)
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last && last.state)}`)
}

const launchId = crypto.randomUUID()
const t0 = Date.now()

// Launch as batchService.ts does: one task_batches row, root tasks, root_task_id fix-up.
const batch = must(await sb.from('task_batches').insert({
  name: 'E2E front end - Launch', status: 'processing', orchestrator_config_id: configId, created_by: userId,
  global_context: {}, total_tasks: 2, execution_delay_seconds: 0, launch_id: launchId,
}).select(), 'insert task_batches')[0]
check(batch && batch.id, 'insert task_batches returned no id')

const rows = ['photosynthesis', `${failTag} the water cycle`].map((topic, i) => ({
  batch_id: batch.id, launch_id: launchId, stage_key: 'draft', task_type: 'generation', tier_source: 'premium_byok',
  step_number: 1, status: 'plan', lo_code: `LO-${i}`, prompt_template_id: templateId, user_id: userId, sequence: i,
  input_data: { input_data: topic, _orchestrator_config_id: configId, _orchestrator_name: 'E2E: reviewed draft', _prompt_template_id: templateId },
  extra: { launcher_metadata: { original_index: i, source_file: 'e2e.csv', config_id: configId, launch_id: launchId } },
}))
const inserted = must(await sb.from('ai_tasks').insert(rows).select(), 'insert ai_tasks')
check(inserted.length === 2, `inserted ${inserted.length} tasks`)
for (const t of inserted) {
  must(await sb.from('ai_tasks').update({ root_task_id: t.id }).eq('id', t.id), 'update root_task_id')
}
const [okTask, failTask] = [...inserted].sort((a, b) => a.sequence - b.sequence)

const progress = async () => must(await sb.from('ai_tasks')
  .select('id, stage_key, step_number, status, created_at, started_at, completed_at, input_data, extra')
  .or(`batch_id.eq.${batch.id},launch_id.eq.${launchId}`)
  .order('step_number').order('created_at'), 'progress')
const byId = (list, id) => list.find((t) => t.id === id)

// The draft waits for approval; the marked one fails.
await poll('draft generated and marked draft failed', async () => {
  const list = await progress()
  const a = byId(list, okTask.id), b = byId(list, failTask.id)
  return { ok: a && a.status === 'generated' && b && b.status === 'failed', state: list.map((t) => [t.stage_key, t.status]) }
})

// Batch detail with the FK-hinted embed.
const detail = must(await sb.from('task_batches')
  .select('id, name, status, orchestrator_config_id, lab_orchestrator_configs!task_batches_orchestrator_config_id_fkey(name, steps)')
  .eq('id', batch.id).maybeSingle(), 'task_batches embed')
check(detail && detail.lab_orchestrator_configs && detail.lab_orchestrator_configs.name === 'E2E: reviewed draft',
  `embed: ${JSON.stringify(detail)}`)
check(Array.isArray(detail.lab_orchestrator_configs.steps) && detail.lab_orchestrator_configs.steps.length === 2, 'embed steps')

// The other user sees nothing of it and cannot act on it.
check(must(await other.from('ai_tasks').select('id').or(`batch_id.eq.${batch.id},launch_id.eq.${launchId}`), 'other ai_tasks').length === 0,
  'other user sees the tasks')
check(must(await other.from('task_batches').select('id').eq('id', batch.id), 'other task_batches').length === 0, 'other user sees the batch')
const otherApprove = await other.rpc('approve_task', { p_task_id: okTask.id })
check(otherApprove.error, 'other user approved a task that is not theirs')
const otherRetry = await other.rpc('retry_failed_task', { p_task_id: failTask.id })
check(otherRetry.error, 'other user retried a task that is not theirs')

// Approve; the 1:1 successor runs.
must(await sb.rpc('approve_task', { p_task_id: okTask.id }), 'approve_task')
// Retry the failed one (the fake model answers it the second time).
must(await sb.rpc('retry_failed_task', { p_task_id: failTask.id }), 'retry_failed_task')
await poll('retried draft generated', async () => {
  const list = await progress()
  const b = byId(list, failTask.id)
  return { ok: b && b.status === 'generated', state: list.map((t) => [t.stage_key, t.status]) }
})
must(await sb.rpc('approve_task', { p_task_id: failTask.id, p_edited_output: { title: 'Edited', body: 'Edited by the reviewer' }, p_edit_notes: 'e2e edit' }),
  'approve_task with edit')

const final = await poll('every task completed', async () => {
  const list = await progress()
  return { ok: list.length === 4 && list.every((t) => t.status === 'completed'), state: list.map((t) => [t.stage_key, t.status]), list }
})
const progressRpc = must(await sb.rpc('get_batch_progress', { p_batch_id: batch.id }), 'get_batch_progress')
check(progressRpc.total === 4 && progressRpc.completed === 4, `get_batch_progress: ${JSON.stringify(progressRpc)}`)
const edited = final.list.find((t) => t.stage_key === 'publish' && t.input_data && t.input_data.title === 'Edited')
check(edited, 'the publish task of the edited draft does not hold the edited output')

// The author publishes the pipeline as the hub does (is_public on the
// config); another user launches it, the same way, on their own account:
// the published config's templates are usable, and the work is theirs.
const otherId = env('OTHER_USER_ID')
// HUB_ASSET_ID: an existing hub asset (an upgraded original database keeps
// the original's foreign key to hub_assets).
const hubAssetId = process.env.HUB_ASSET_ID || crypto.randomUUID()
must(await sb.from('lab_orchestrator_configs').update({ is_public: true, hub_asset_id: hubAssetId }).eq('id', configId), 'publish config')
const hubLaunch = crypto.randomUUID()
const hubBatch = must(await other.from('task_batches').insert({
  name: 'Hub launch', status: 'processing', orchestrator_config_id: configId, created_by: otherId,
  global_context: {}, total_tasks: 1, execution_delay_seconds: 0, launch_id: hubLaunch,
}).select(), 'other: insert task_batches on a published config')[0]
const hubTask = must(await other.from('ai_tasks').insert([{
  batch_id: hubBatch.id, launch_id: hubLaunch, stage_key: 'draft', task_type: 'generation', tier_source: 'premium_byok',
  step_number: 1, status: 'plan', lo_code: 'HUB-0', prompt_template_id: templateId, user_id: otherId, sequence: 0,
  input_data: { input_data: 'published pipelines' },
}]).select(), 'other: insert ai_tasks on a published template')[0]
const hubProgress = async () => must(await other.from('ai_tasks').select('id, stage_key, status, user_id')
  .or(`batch_id.eq.${hubBatch.id},launch_id.eq.${hubLaunch}`), 'other: progress')
await poll('hub draft generated', async () => {
  const list = await hubProgress()
  return { ok: list.some((t) => t.id === hubTask.id && t.status === 'generated'), state: list.map((t) => [t.stage_key, t.status]) }
})
must(await other.rpc('approve_task', { p_task_id: hubTask.id }), 'other: approve_task')
const hubFinal = await poll('hub launch completed', async () => {
  const list = await hubProgress()
  return { ok: list.length === 2 && list.every((t) => t.status === 'completed'), state: list.map((t) => [t.stage_key, t.status]), list }
})
check(hubFinal.list.every((t) => t.user_id === otherId), 'hub launch tasks are not owned by the launcher')
check(must(await sb.from('ai_tasks').select('id').eq('batch_id', hubBatch.id), 'author reads hub batch').length === 0,
  'the author sees the launcher\'s tasks')

console.log(JSON.stringify({ ok: true, batch_id: batch.id, launch_id: launchId, tasks: final.list.length, hub_tasks: hubFinal.list.length, ms: Date.now() - t0 }))
