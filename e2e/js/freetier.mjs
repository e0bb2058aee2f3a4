// The original front end's free-tier flow (reference/frontend-contract.md
// §1.10, §2), done with supabase-js against the PostgREST test server while
// orchable runs the work: a signed-in free user without personal keys reads
// its profile, polls get_free_tier_usage, launches within the quota through
// submit_free_tier_tasks (batch first, as batchService.ts does), is refused
// with QUOTA_EXCEEDED past it (and no empty batch is left), waits for its
// tasks, and reads get_user_usage. Run by e2e/freetier_test.go; prints one
// JSON summary line, exits non-zero on the first failed expectation.
import { createClient } from '@supabase/supabase-js'

const env = (k) => {
  const v = process.env[k]
  if (!v) throw new Error(`missing env ${k}`)
  return v
}
const url = env('SUPABASE_URL')
const anon = env('SUPABASE_ANON_KEY')
const userId = env('USER_ID')
const otherId = env('OTHER_USER_ID')
const templateId = env('TEMPLATE_ID')
const configId = env('CONFIG_ID')
const quota = Number(env('QUOTA'))

const sb = createClient(url, anon, {
  global: { headers: { Authorization: `Bearer ${env('USER_JWT')}` } },
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
})

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

// AuthContext.tsx: the profile decides the tier; a missing row means free.
const profile = must(await sb.from('user_profiles').select('*').eq('id', userId).maybeSingle(), 'user_profiles')
check(profile === null || profile.tier === 'free', `profile ${JSON.stringify(profile)}`)
// keyPoolService.ts: no personal key, so the free pool is the path.
const keys = must(await sb.from('user_api_keys').select('id').eq('user_id', userId).eq('pool_type', 'personal').limit(1), 'user_api_keys')
check(keys.length === 0, 'the free user has personal keys')

// freeTierService.ts: the meter (one row, or an array whose [0] is used).
const meter = async () => {
  const data = must(await sb.rpc('get_free_tier_usage', {}), 'get_free_tier_usage')
  return Array.isArray(data) ? data[0] : data
}
const before = await meter()
check(before.used === 0 && before.limit === quota && before.remaining === quota, `meter before: ${JSON.stringify(before)}`)

// batchService.ts + SupabaseAdapter.createTasks: the batch, then the RPC.
async function launch(n, tag) {
  const launchId = crypto.randomUUID()
  const batch = must(await sb.from('task_batches').insert({
    name: `E2E free tier - ${tag}`, status: 'processing', orchestrator_config_id: configId, created_by: userId,
    global_context: {}, total_tasks: n, execution_delay_seconds: 0, launch_id: launchId,
  }).select(), 'insert task_batches')[0]
  const tasks = [...Array(n).keys()].map((i) => ({
    batch_id: batch.id, launch_id: launchId, stage_key: 'probe', task_type: 'probe', tier_source: 'free_pool',
    step_number: 1, status: 'plan', lo_code: `LO-${tag}-${i}`, prompt_template_id: templateId, user_id: userId, sequence: i,
    input_data: { input_data: `${tag} topic ${i}`, _orchestrator_config_id: configId, _orchestrator_name: 'E2E: free tier' },
    extra: { launcher_metadata: { original_index: i, source_file: 'e2e.csv', config_id: configId, launch_id: launchId } },
  }))
  const res = must(await sb.rpc('submit_free_tier_tasks', { p_tasks: tasks }), 'submit_free_tier_tasks')
  return { batch, launchId, res }
}

const first = await launch(quota - 1, 'within')
check(first.res.success === true && first.res.used === quota - 1 && first.res.remaining === 1, `within quota: ${JSON.stringify(first.res)}`)

const second = await launch(2, 'past')
check(second.res.success === false && second.res.error === 'QUOTA_EXCEEDED', `past quota: ${JSON.stringify(second.res)}`)
check(second.res.used === quota - 1 && second.res.limit === quota && second.res.remaining === 1, `refusal numbers: ${JSON.stringify(second.res)}`)
const leftover = must(await sb.from('task_batches').select('id').eq('id', second.batch.id), 'refused batch')
check(leftover.length === 0, 'the refused launch left its batch behind')

const mid = await meter()
check(mid.used === quota - 1 && mid.remaining === 1, `meter after: ${JSON.stringify(mid)}`)

// Monitor: the free tasks keep what the UI sent and complete.
const done = await poll('the free tasks to complete', async () => {
  const list = must(await sb.from('ai_tasks')
    .select('id, status, tier_source, stage_key, lo_code, sequence, launch_id, root_task_id, output_data')
    .or(`batch_id.eq.${first.batch.id},launch_id.eq.${first.launchId}`)
    .order('step_number').order('created_at'), 'progress')
  return { ok: list.length === quota - 1 && list.every((t) => t.status === 'completed'), state: list.map((t) => t.status), list }
})
for (const t of done.list) {
  check(t.tier_source === 'free_pool' && t.stage_key === 'probe' && t.lo_code.startsWith('LO-within-') && t.launch_id === first.launchId
    && t.root_task_id === t.id && t.output_data, `task fields: ${JSON.stringify(t)}`)
}

// usageService.ts: the usage page, data[0] is this month.
const usage = must(await sb.rpc('get_user_usage', { p_user_id: userId }), 'get_user_usage')
check(usage[0].task_count === quota - 1 && usage[0].month === before.month, `get_user_usage: ${JSON.stringify(usage)}`)
const { error: otherErr } = await sb.rpc('get_user_usage', { p_user_id: otherId })
check(otherErr && otherErr.code === '42501', `another user's usage: ${JSON.stringify(otherErr)}`)

console.log(JSON.stringify({ batch_id: first.batch.id, refused_batch_id: second.batch.id, used: mid.used, limit: mid.limit, tasks: done.list.length }))
