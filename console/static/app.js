// The orchable console: hash-routed views over the user API. Every value
// from the API is put in the page as text (never as HTML).
import { api, APIError, currentSession, loadSettings, signInDev, signInWithPassword, signOut, whenSignedOut } from "./api.js";
import { validate } from "./schema.js";
import { parseRows } from "./rows.js";

const view = document.getElementById("view");
let settings = null;

// ---------------------------------------------------------------------------
// Small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the CSP, unlike style attributes
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// put replaces el's children, skipping null, undefined and false, and
// flattening arrays.
function put(el, ...children) {
  el.replaceChildren(...children.flat(2).filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
function fmtTime(ts) { return ts ? timeFmt.format(new Date(ts)) : "—"; }
function fmtDur(a, b) {
  if (!a) return "—";
  const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  if (ms < 60e3) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60e3)} min ${Math.round((ms % 60e3) / 1000)} s`;
}
function fmtNum(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString(); }
function short(id) { return id ? id.slice(0, 8) : "—"; }
function badge(status) { return h("span", { class: `badge s-${status}`, text: status === "generated" ? "awaiting approval" : status }); }

function toast(msg, bad = false) {
  const box = document.getElementById("toast");
  const el = h("div", { class: bad ? "msg bad" : "msg", text: msg });
  box.append(el);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => el.remove(), bad ? 6000 : 3500);
}

function errorBox(e) {
  return h("div", { class: "error", role: "alert", text: e instanceof APIError ? `${e.message} (${e.code})` : String(e.message || e) });
}

// jsonBlock shows value pretty-printed; large values start collapsed.
function jsonBlock(value, label, id) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const pre = h("pre", { class: "json", id, text });
  if (text.length <= 2000) return pre;
  const kb = (new Blob([text]).size / 1024).toFixed(1);
  return h("details", {}, h("summary", { text: `Show ${label} (${kb} KB, ${text.split("\n").length} lines)` }), pre);
}

// bar draws done/failed/running/waiting shares of total.
function bar(total, done, failed, running, waiting) {
  const pct = (n) => (total > 0 ? `${(100 * n) / total}%` : "0%");
  const el = h("div", { class: "bar", role: "img", "aria-label": `${done} of ${total} done, ${failed} failed` },
    h("span", { class: "ok", style: { width: pct(done) } }),
    h("span", { class: "bad", style: { width: pct(failed) } }),
    h("span", { class: "wait", style: { width: pct(waiting || 0) } }),
    h("span", { class: "run", style: { width: pct(running || 0) } }));
  return el;
}

// ---------------------------------------------------------------------------
// Polling: each view's timers end when the view changes; nothing runs while
// the tab is hidden.

let timers = [];
let generation = 0;
// every runs fn every ms for the route that started at generation gen (the
// view's own, taken before its first await): a view that finishes loading
// after the user navigated away starts no timer.
function every(gen, ms, fn) {
  if (gen !== generation) return;
  let t = null;
  const tick = async () => {
    if (gen !== generation) return;
    if (!document.hidden) { try { await fn(); } catch (e) { if (!(e instanceof APIError && e.status === 401)) console.warn(e); } }
    if (gen === generation) { t = setTimeout(tick, ms); timers.push(t); }
  };
  t = setTimeout(tick, ms);
  timers.push(t);
}
function stopTimers() { generation++; timers.forEach(clearTimeout); timers = []; }
// mount replaces the view's content for the route that started at
// generation gen. A view whose data arrives after the user has navigated
// away (route() moved generation on) draws nothing: it would overwrite the
// page the user went to.
function mount(gen, ...children) {
  if (gen === generation) put(view, ...children);
}
document.addEventListener("visibilitychange", () => { if (!document.hidden) window.dispatchEvent(new Event("console:visible")); });

// ---------------------------------------------------------------------------
// Batch actions (list and batch page)

function batchActions(b, refresh) {
  const act = (label, path, cls, confirmText) => h("button", {
    type: "button", class: cls, "data-action": path,
    onclick: async (ev) => {
      if (confirmText && !window.confirm(confirmText)) return;
      ev.target.disabled = true;
      try {
        const r = await api("POST", `/batches/${b.id}/${path}`);
        toast(path === "retry-failed" ? `${r.retried} failed task(s) queued again` : `Batch ${r.status || path}`);
        await refresh();
      } catch (e) { toast(e.message, true); } finally { ev.target.disabled = false; }
    },
  }, label);
  const st = b.status;
  const out = [];
  if (st === "pending" || st === "processing") out.push(act("Pause", "pause"));
  if (st === "paused") out.push(act("Resume", "resume", "primary"));
  if (st !== "completed" && st !== "cancelled" && st !== "failed") out.push(act("Cancel", "cancel", "danger", "Cancel this batch and its unfinished tasks?"));
  if ((b.failed ?? b.failed_tasks ?? 0) > 0) out.push(act("Retry failed", "retry-failed"));
  return out;
}

function stageRows(byStage, order) {
  const keys = order && order.length ? order.filter((k) => byStage[k]).concat(Object.keys(byStage).filter((k) => !order.includes(k))) : Object.keys(byStage).sort();
  return keys.map((k) => {
    const s = byStage[k] || {};
    const total = Object.values(s).reduce((a, n) => a + n, 0);
    const done = (s.completed || 0) + (s.approved || 0) + (s.skipped || 0);
    const failed = (s.failed || 0) + (s.cancelled || 0);
    const running = (s.processing || 0) + (s.running || 0);
    const waiting = s.generated || 0;
    return h("div", { class: "st", "data-stage": k },
      h("span", { text: k || "(none)" }), bar(total, done, failed, running, waiting),
      h("span", { class: "small muted", text: `${fmtNum(done)}/${fmtNum(total)}${failed ? ` · ${fmtNum(failed)} failed` : ""}${waiting ? ` · ${fmtNum(waiting)} awaiting` : ""}` }));
  });
}

const finished = (st) => st === "completed" || st === "failed" || st === "cancelled";

// ---------------------------------------------------------------------------
// Views

async function viewBatches(params) {
  const gen = generation;
  const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  const limit = 20;
  const list = h("div", { class: "batch-list", id: "batch-list" });
  const pager = h("div", { class: "row" });
  const err = h("div");
  put(view, 
    h("div", { class: "row spread" }, h("h1", { text: "Batches" }), h("a", { class: "button primary", href: "#/launch" }, "Launch a batch")),
    err, list, pager);
  const cards = new Map();
  const progress = new Map(); // batch id → {status, data}
  const orders = new Map(); // pipeline (config) id → stage keys in pipeline order, read once
  const load = async () => {
    let page;
    try { page = await api("GET", `/batches?limit=${limit}&offset=${offset}`); put(err, ); } catch (e) { put(err, errorBox(e)); return; }
    if (page.items.length === 0) {
      put(list, h("div", { class: "card empty" }, offset ? "No more batches." : "No batches yet. ", !offset && h("a", { href: "#/launch" }, "Launch one.")));
    }
    // Per-stage counts for the unfinished batches on this page (at most
    // five) and once for each finished one.
    const want = page.items.filter((b) => !finished(b.status) || !progress.has(b.id) || progress.get(b.id).status !== b.status).slice(0, 5);
    await Promise.all(want.map(async (b) => {
      try { progress.set(b.id, { status: b.status, data: await api("GET", `/batches/${b.id}?max_age=3`) }); } catch { /* shown next time */ }
      const cfg = b.orchestrator_config_id;
      if (cfg && !orders.has(cfg)) {
        orders.set(cfg, null);
        try { orders.set(cfg, (await api("GET", `/batches/${b.id}/pipeline`)).stages.map((st) => st.stage_key)); } catch { /* alphabetical */ }
      }
    }));
    const seen = new Set();
    page.items.forEach((b, i) => {
      seen.add(b.id);
      let c = cards.get(b.id);
      if (!c) {
        c = { el: h("div", { class: "card batch", "data-batch": b.id }), key: null };
        cards.set(b.id, c);
      }
      if (list.children[i] !== c.el) list.insertBefore(c.el, list.children[i] || null);
      const p = progress.get(b.id)?.data;
      const total = p ? p.total : b.total_tasks;
      const done = p ? p.completed : b.completed_tasks;
      const failed = p ? p.failed : b.failed_tasks;
      const waiting = p ? p.awaiting_approval : 0;
      const running = p ? p.processing : b.processing_tasks;
      const pct = total ? Math.round((100 * (done + failed)) / total) : 0;
      const info = h("div", {},
        h("div", { class: "row" }, h("a", { href: `#/batch/${b.id}`, text: b.name || short(b.id) }), badge(b.status)),
        h("div", { class: "small muted", text: `${fmtTime(b.created_at)} · ${fmtNum(total)} tasks · ${pct}% done${waiting ? ` · ${waiting} awaiting approval` : ""}${failed ? ` · ${failed} failed` : ""}` }));
      const stages = h("div", { class: "stages" }, h("div", { class: "st" }, h("span", { class: "small", text: "all stages" }), bar(total, done, failed, running, waiting), h("span", { class: "small muted", text: `${pct}%` })),
        p ? stageRows(p.by_stage || {}, orders.get(b.orchestrator_config_id)) : []);
      const key = `${b.status}|${b.failed_tasks}|${p ? p.failed : ""}`;
      let actions = c.el.querySelector(".actions");
      if (c.key !== key || !actions) {
        const fresh = h("div", { class: "actions" }, batchActions({ ...b, failed }, load));
        if (!actions || !actions.contains(document.activeElement)) actions = fresh;
        c.key = key;
      }
      put(c.el, info, stages, actions);
    });
    for (const [id, c] of cards) if (!seen.has(id)) { c.el.remove(); cards.delete(id); }
    put(pager, 
      offset > 0 ? h("a", { class: "button", href: `#/batches?offset=${Math.max(0, offset - limit)}` }, "← Newer") : null,
      page.has_more ? h("a", { class: "button", href: `#/batches?offset=${offset + limit}` }, "Older →") : null);
  };
  await load();
  every(gen, 3000, load);
}

// drawGraph lays the stages out in columns by depth and draws the edges
// with their cardinality and each stage's counts.
function drawGraph(pipe, byStage) {
  const stages = pipe.stages;
  const depth = {};
  const byKey = Object.fromEntries(stages.map((s) => [s.stage_key, s]));
  const d = (k, seen = new Set()) => {
    if (depth[k] !== undefined) return depth[k];
    if (seen.has(k)) return 0;
    seen.add(k);
    const s = byKey[k];
    depth[k] = s && s.depends_on.length ? 1 + Math.max(...s.depends_on.map((p) => (byKey[p] ? d(p, seen) : 0))) : 0;
    return depth[k];
  };
  stages.forEach((s) => d(s.stage_key));
  const cols = {};
  stages.forEach((s) => { (cols[depth[s.stage_key]] ||= []).push(s); });
  const W = 236, H = 78, GX = 90, GY = 24;
  const pos = {};
  let maxRows = 1;
  Object.entries(cols).forEach(([c, list]) => {
    maxRows = Math.max(maxRows, list.length);
    list.forEach((s, r) => { pos[s.stage_key] = { x: 10 + Number(c) * (W + GX), y: 10 + r * (H + GY) }; });
  });
  const ncols = Object.keys(cols).length || 1;
  const width = 20 + ncols * W + (ncols - 1) * GX;
  const height = 20 + maxRows * H + (maxRows - 1) * GY;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `Pipeline ${pipe.name}: ${stages.map((s) => s.stage_key).join(", ")}` });
  const defs = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#7b8799" })));
  root.append(defs);
  for (const s of stages) {
    for (const p of s.depends_on) {
      const a = pos[p], b = pos[s.stage_key];
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      root.append(svg("path", { class: "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }));
      root.append(svg("text", { class: "card-label", x: mx, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" }, s.cardinality));
    }
  }
  for (const s of stages) {
    const p = pos[s.stage_key];
    const c = byStage[s.stage_key] || {};
    const total = Object.values(c).reduce((a, n) => a + n, 0);
    const done = (c.completed || 0) + (c.approved || 0) + (c.skipped || 0);
    const failed = (c.failed || 0) + (c.cancelled || 0);
    const waiting = c.generated || 0;
    const running = (c.processing || 0) + (c.running || 0);
    const cls = failed ? "bad" : waiting ? "wait" : total && done === total ? "done" : "";
    root.append(svg("g", { class: `node ${cls}`, "data-stage": s.stage_key, transform: `translate(${p.x},${p.y})` },
      svg("rect", { width: W, height: H, rx: 8 }),
      svg("text", { x: 10, y: 20, "font-weight": "700" }, s.label.length > 30 ? `${s.label.slice(0, 29)}…` : s.label),
      svg("text", { x: 10, y: 38, fill: "#5d6b7e" }, `${s.stage_key}${s.requires_approval ? " · approval" : ""}`),
      svg("text", { x: 10, y: 58 }, `${fmtNum(done)}/${fmtNum(total)} done${running ? ` · ${fmtNum(running)} running` : ""}`),
      svg("text", { x: 10, y: 73, fill: failed ? "#c23a3a" : "#7d5fc7" }, `${failed ? `${fmtNum(failed)} failed` : ""}${failed && waiting ? " · " : ""}${waiting ? `${fmtNum(waiting)} awaiting` : ""}`)));
  }
  return root;
}

function taskRow(t) {
  const row = h("div", { class: "t", "data-task": t.id, "data-status": t.status });
  fillTaskRow(row, t);
  return row;
}
function fillTaskRow(row, t, toggle) {
  row.dataset.status = t.status;
  const keep = row.querySelector(".toggle");
  put(row, 
    toggle || keep || h("span"),
    h("span", {}, badge(t.status)),
    h("span", {}, h("a", { href: `#/task/${t.id}`, title: t.id }, `${t.stage_key || "task"} ${short(t.id)}`)),
    h("span", { class: "wide muted", title: `created ${fmtTime(t.created_at)}`, text: fmtTime(t.started_at || t.created_at) }),
    h("span", { text: fmtDur(t.started_at, t.completed_at) }),
    h("span", { class: "wide", title: "total tokens", text: t.total_token_count != null ? `${fmtNum(t.total_token_count)} tok` : "—" }),
    t.error_message ? h("span", { class: "wide bad-text", title: t.error_message, text: t.error_message })
      : h("span", { class: "wide muted", title: "API key name", text: t.api_key_name || (t.api_key_id ? "(removed key)" : "—") }));
}

// taskList is a paged, refreshable list of tasks (a tree level or a flat
// filtered list). Rows update in place.
function taskList(query, batchId, nested) {
  const ul = h("ul", { class: "tree" });
  const more = h("div", { class: "more" });
  const wrap = h("div", {}, ul, more);
  const rows = new Map(); // id → {li, row, child}
  let loaded = 0;
  const render = (items) => {
    for (const t of items) {
      let r = rows.get(t.id);
      if (!r) {
        const li = h("li");
        const row = taskRow(t);
        r = { li, row, child: null };
        if (nested) {
          const btn = h("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-label": `Show children of ${short(t.id)}`, text: "▸" });
          btn.addEventListener("click", async () => {
            if (r.child) { r.child.wrap.remove(); r.child = null; btn.setAttribute("aria-expanded", "false"); btn.textContent = "▸"; return; }
            r.child = taskList(`parent=${t.id}`, batchId, true);
            btn.setAttribute("aria-expanded", "true"); btn.textContent = "▾";
            li.append(r.child.wrap);
            await r.child.load();
          });
          row.firstChild.replaceWith(btn);
        }
        li.append(row);
        ul.append(li);
        rows.set(t.id, r);
      } else fillTaskRow(r.row, t);
    }
  };
  const fetchPage = async (offset, limit) => api("GET", `/batches/${batchId}/tasks?${query}&limit=${limit}&offset=${offset}`);
  const self = {
    wrap,
    load: async () => {
      const page = await fetchPage(loaded, 50);
      loaded += page.items.length;
      render(page.items);
      if (!loaded) put(ul, h("li", { class: "muted small", text: query.startsWith("parent=") && query !== "parent=none" ? "No children." : "No tasks match." }));
      put(more, page.has_more ? h("button", { type: "button", onclick: self.load }, "Load more") : "");
    },
    // refresh re-reads what is shown (at most 200 rows per level) and the
    // expanded levels (at most 10).
    refresh: async () => {
      if (!loaded) return self.load();
      const page = await fetchPage(0, Math.min(Math.max(loaded, 1), 200));
      render(page.items);
      let n = 0;
      for (const r of rows.values()) if (r.child && n++ < 10) await r.child.refresh();
    },
  };
  return self;
}

async function viewBatch(id) {
  const gen = generation;
  const head = h("div");
  const graph = h("div", { class: "card graph", id: "graph" }, h("p", { class: "muted", text: "Loading the pipeline…" }));
  const filter = h("select", { id: "task-filter", "aria-label": "Show tasks" },
    h("option", { value: "" }, "Tree (parent → children)"),
    ...["failed", "generated", "processing", "plan", "completed", "cancelled"].map((s) => h("option", { value: s }, s === "generated" ? "awaiting approval" : s)));
  const tasksBox = h("div", { class: "card", id: "tasks" });
  put(view, head, graph, h("div", { class: "row spread" }, h("h2", { text: "Tasks" }), filter), tasksBox);
  let pipe = null;
  let prog = null;
  let list = null;
  const showList = () => {
    list = taskList(filter.value ? `status=${filter.value}` : "parent=none", id, !filter.value);
    put(tasksBox, h("div", { class: "t muted small", "aria-hidden": "true" }, h("span"), h("span", { text: "status" }), h("span", { text: "task" }),
      h("span", { class: "wide", text: "started" }), h("span", { text: "took" }), h("span", { class: "wide", text: "tokens" }), h("span", { class: "wide", text: "key" })), list.wrap);
    return list.load();
  };
  filter.addEventListener("change", () => showList().catch((e) => tasksBox.append(errorBox(e))));
  const loadProgress = async () => {
    try { prog = await api("GET", `/batches/${id}?max_age=2`); } catch (e) {
      if (gen !== generation) return false; // navigated away meanwhile: not ours to stop
      put(head, h("h1", { text: "Batch" }), errorBox(e), h("a", { href: "#/batches" }, "Back to batches"));
      graph.remove(); tasksBox.remove(); filter.parentElement?.remove();
      stopTimers();
      return false;
    }
    renderProgress();
    return true;
  };
  const renderProgress = () => {
    const done = prog.completed, total = prog.total;
    const pct = total ? Math.round((100 * (done + prog.failed)) / total) : 0;
    const actions = head.querySelector(".actions");
    const fresh = h("div", { class: "actions" }, batchActions({ id, status: prog.status, failed: prog.failed }, loadProgress));
    put(head, 
      h("div", { class: "row spread" }, h("h1", {}, prog.name || "Batch", " ", badge(prog.status)),
        actions && actions.contains(document.activeElement) ? actions : fresh),
      h("div", { class: "card" },
        h("div", { class: "row spread" },
          h("strong", { id: "batch-pct", "data-pct": String(pct), text: `${pct}% finished` }),
          h("span", { class: "small muted", text: `${fmtNum(total)} tasks · ${fmtNum(done)} completed · ${fmtNum(prog.processing)} running · ${fmtNum(Math.max(0, prog.pending - prog.awaiting_approval))} queued · ${fmtNum(prog.awaiting_approval)} awaiting approval · ${fmtNum(prog.failed)} failed · ${fmtNum(prog.total_tokens)} tokens` })),
        bar(total, done, prog.failed, prog.processing, prog.awaiting_approval),
        h("div", { class: "small muted", text: `Created ${fmtTime(prog.created_at)}${prog.completed_at ? ` · finished ${fmtTime(prog.completed_at)}` : ""} · times in ${zone}` }),
        h("div", { class: "stages", style: { marginTop: ".5rem" } }, stageRows(prog.by_stage || {}, pipe ? pipe.stages.map((s) => s.stage_key) : null))));
    if (pipe) put(graph, drawGraph(pipe, prog.by_stage || {}));
  };
  if (!(await loadProgress())) return;
  try { pipe = await api("GET", `/batches/${id}/pipeline`); renderProgress(); } catch (e) {
    put(graph, h("p", { class: "muted", text: `The pipeline graph is not available: ${e.message}` }));
  }
  await showList().catch((e) => tasksBox.append(errorBox(e)));
  // Polling: progress every 2.5 s (every 10 s for batches over 2,000
  // tasks, whose count costs more); the shown task rows with it while the
  // batch moves, every 40 s once it stands still.
  let tick = 0;
  every(gen, 2500, async () => {
    tick++;
    if (prog && prog.total > 2000 && tick % 4 !== 0) return;
    const wasOpen = prog && (prog.pending > 0 || prog.processing > 0);
    if (!(await loadProgress())) return;
    const open = prog.pending > 0 || prog.processing > 0;
    if (open || wasOpen || tick % 16 === 0) await list.refresh();
  });
}

async function viewTask(id) {
  const gen = generation;
  put(view, h("p", { class: "muted", text: "Loading…" }));
  let d;
  try { d = await api("GET", `/tasks/${id}`); } catch (e) {
    mount(gen, h("h1", { text: "Task" }), errorBox(e), h("a", { href: "#/batches" }, "Back to batches"));
    return;
  }
  const t = d.task;
  const kv = (k, v) => [h("dt", { text: k }), h("dd", {}, v ?? "—")];
  const link = (hash, idv) => (idv ? h("a", { href: hash, title: idv }, short(idv)) : "—");
  const actions = h("div", { class: "card", id: "task-actions" });
  const children = h("div", { id: "children" });
  mount(gen, 
    h("div", { class: "row" }, h("a", { href: `#/batch/${t.batch_id}` }, "← Batch"), h("h1", {}, `${t.stage_key || "Task"} ${short(t.id)} `, badge(t.status))),
    actions,
    h("div", { class: "two" },
      h("div", { class: "card" }, h("dl", { class: "kv" },
        kv("Task", h("code", { text: t.id })), kv("Batch", link(`#/batch/${t.batch_id}`, t.batch_id)),
        kv("Stage", `${t.stage_key || "—"} (step ${t.step_number}${t.total_steps ? ` of ${t.total_steps}` : ""})`),
        kv("Parent", link(`#/task/${t.parent_task_id}`, t.parent_task_id)), kv("Root", link(`#/task/${t.root_task_id}`, t.root_task_id)),
        kv("Model", t.model_id ? `${t.model_id}${t.model_version ? ` (${t.model_version})` : ""}` : d.stage?.model_id ? `${d.stage.model_id} (the stage's setting)` : "—"),
        kv("API key", t.api_key_name || (t.api_key_id ? "(a key you no longer have)" : "—")),
        kv("Attempts", `${t.attempts} model attempt(s), retried ${t.retry_count} time(s)`))),
      h("div", { class: "card" }, h("dl", { class: "kv" },
        kv("Created", fmtTime(t.created_at)), kv("Started", fmtTime(t.started_at)), kv("Completed", fmtTime(t.completed_at)),
        kv("Took", fmtDur(t.started_at, t.completed_at)),
        kv("Tokens", t.total_token_count != null ? `${fmtNum(t.total_token_count)} (prompt ${fmtNum(t.prompt_token_count)}, output ${fmtNum(t.candidates_token_count)}, thinking ${fmtNum(t.thoughts_token_count)})` : "—"),
        kv("Approved", t.approved_at ? fmtTime(t.approved_at) : "—"), kv("Reviewer notes", t.edit_notes || "—"),
        kv("Time zone", zone)))),
    t.error_message ? h("div", { class: "error", id: "task-error" }, h("strong", { text: "Error: " }), t.error_message) : null,
    h("h2", { text: "Input" }), jsonBlock(t.input_data, "input", "task-input"),
    h("h2", { text: "Output" }), t.output_data == null ? h("p", { class: "muted", text: "No output yet." }) : jsonBlock(t.output_data, "output", "task-output"),
    t.edited_output_data != null ? [h("h2", { text: "Edited output (approved)" }), jsonBlock(t.edited_output_data, "edited output", "task-edited")] : null,
    h("h2", { text: "Children" }), children);
  const kids = taskList(`parent=${t.id}`, t.batch_id, false);
  children.append(kids.wrap);
  kids.load().catch((e) => children.append(errorBox(e)));

  const act = async (btn, method, path, body, done) => {
    btn.disabled = true;
    try { await api(method, path, body); toast(done); route(); } catch (e) { toast(e.message, true); btn.disabled = false; }
  };
  if (t.status === "generated") {
    const schema = d.stage && d.stage.output_schema;
    const editor = h("textarea", { id: "edit-output", rows: "12", "aria-label": "Edited output (JSON)", spellcheck: "false" });
    editor.value = JSON.stringify(t.output_data, null, 2);
    const problems = h("ul", { class: "problems", id: "edit-problems", "aria-live": "polite" });
    const notes = h("input", { id: "edit-notes", type: "text", placeholder: "What you changed (optional)", "aria-label": "Edit notes" });
    const approveEdited = h("button", { type: "button", class: "primary", "data-action": "approve-edited" }, "Approve with edits");
    const check = () => {
      let v;
      const out = [];
      try { v = JSON.parse(editor.value); } catch (e) { out.push(`Not valid JSON: ${e.message}`); }
      if (!out.length && schema) out.push(...validate(schema, v));
      put(problems, ...out.slice(0, 20).map((p) => h("li", { text: p })));
      if (!out.length) put(problems, h("li", { class: "ok-text", text: schema ? "Valid against the stage's output schema." : "Valid JSON (the stage has no output schema)." }));
      approveEdited.disabled = out.length > 0;
      return out.length ? undefined : v;
    };
    editor.addEventListener("input", check);
    approveEdited.addEventListener("click", () => {
      const v = check();
      if (v !== undefined) act(approveEdited, "POST", `/tasks/${t.id}/approve`, { edited_output: v, edit_notes: notes.value || null }, "Approved with your edits");
    });
    const reason = h("textarea", { id: "reject-reason", rows: "3", "aria-label": "Reason or notes for the model", placeholder: "Why (required): shown to the model as reviewer notes when regenerating" });
    const reject = (regenerate) => (ev) => {
      if (!reason.value.trim()) { toast("Write a reason first.", true); reason.focus(); return; }
      act(ev.target, "POST", `/tasks/${t.id}/reject`, { reason: reason.value, regenerate }, regenerate ? "Sent back for regeneration" : "Rejected");
    };
    const approve = h("button", { type: "button", class: "primary", "data-action": "approve" }, "Approve");
    approve.addEventListener("click", () => act(approve, "POST", `/tasks/${t.id}/approve`, undefined, "Approved"));
    put(actions, 
      h("div", { class: "row spread" }, h("strong", { text: "This task waits for your approval." }), approve),
      h("details", { id: "edit-box" }, h("summary", { text: "Edit the output, then approve" }),
        h("label", { for: "edit-output", text: "Output (JSON), checked against the stage's output schema" }), editor, problems, notes, " ", approveEdited),
      h("label", { for: "reject-reason", text: "Reject" }), reason,
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", "data-action": "reject", onclick: reject(false) }, "Reject"),
        h("button", { type: "button", "data-action": "regenerate", onclick: reject(true) }, "Reject and regenerate with these notes")));
    check();
  } else if (["failed", "completed", "cancelled", "approved", "skipped"].includes(t.status)) {
    const retry = h("button", { type: "button", "data-action": "retry" }, "Retry (removes its descendants)");
    retry.addEventListener("click", () => {
      if (window.confirm("Run this task again and remove everything derived from it?")) act(retry, "POST", `/tasks/${t.id}/retry`, undefined, "Queued again");
    });
    put(actions, h("div", { class: "row spread" }, h("span", { class: "muted", text: t.status === "failed" ? "This task failed." : "This task is finished." }), retry));
  } else {
    put(actions, h("span", { class: "muted", text: "This task is queued or running; this page refreshes until it finishes." }));
    every(gen, 2500, async () => {
      const n = await api("GET", `/tasks/${id}`);
      if (n.task.status !== t.status || n.task.updated_at !== t.updated_at) route();
    });
  }
}

async function viewApprovals(params) {
  const gen = generation;
  const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  const body = h("div", { id: "approvals" });
  put(view, h("h1", { text: "Waiting for approval" }), body);
  const load = async (force) => {
    let page;
    try { page = await api("GET", `/approvals?limit=50&offset=${offset}`); } catch (e) { put(body, errorBox(e)); return; }
    if (!page.items.length) { put(body, h("div", { class: "card empty", text: "Nothing waits for your approval." })); return; }
    // A periodic refresh leaves the table alone while a button in it has
    // the keyboard focus.
    if (!force && body.contains(document.activeElement) && document.activeElement.tagName === "BUTTON") return;
    put(body, h("div", { class: "card" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "Task" }), h("th", { text: "Batch" }), h("th", { class: "hide-narrow", text: "Generated" }), h("th", { text: "" }))),
      h("tbody", {}, page.items.map((t) => h("tr", { "data-task": t.id },
        h("td", {}, h("a", { href: `#/task/${t.id}` }, `${t.stage_key} ${short(t.id)}`)),
        h("td", {}, h("a", { href: `#/batch/${t.batch_id}` }, t.batch_name || short(t.batch_id))),
        h("td", { class: "hide-narrow", text: fmtTime(t.completed_at || t.created_at) }),
        h("td", {}, h("div", { class: "actions" },
          h("a", { class: "button", href: `#/task/${t.id}` }, "Review"),
          h("button", { type: "button", class: "primary", "data-action": "approve", onclick: async (ev) => {
            ev.target.disabled = true;
            try { await api("POST", `/tasks/${t.id}/approve`); toast("Approved"); await load(true); } catch (e) { toast(e.message, true); ev.target.disabled = false; }
          } }, "Approve")))))))),
    h("div", { class: "row" },
      offset > 0 ? h("a", { class: "button", href: `#/approvals?offset=${Math.max(0, offset - 50)}` }, "← Previous") : null,
      page.has_more ? h("a", { class: "button", href: `#/approvals?offset=${offset + 50}` }, "Next →") : null));
  };
  await load(true);
  every(gen, 5000, () => load(false));
}

async function viewLaunch() {
  const err = h("div");
  const pick = h("select", { id: "launch-pipeline", "aria-label": "Pipeline" });
  const name = h("input", { id: "launch-name", type: "text", placeholder: "Batch name (optional)" });
  const rowsText = h("textarea", { id: "launch-rows", rows: "10", placeholder: '{"objective": "Understand fractions", "grade": 6}\n{"objective": "Understand tides", "grade": 7}\n\nor CSV:\nobjective,grade\nUnderstand fractions,6' });
  const file = h("input", { id: "launch-file", type: "file", accept: ".jsonl,.json,.csv,.txt,text/csv,application/json" });
  const parsed = h("div", { class: "small", id: "launch-parsed", "aria-live": "polite" });
  const launch = h("button", { type: "button", class: "primary", id: "launch-submit", disabled: true }, "Launch");
  const stagesInfo = h("div", { class: "small muted" });
  let pipelines = [];
  let rows = [];
  const reparse = () => {
    const r = parseRows(rowsText.value);
    rows = r.rows;
    put(parsed, 
      rows.length ? h("span", { class: "ok-text", text: `${rows.length} row(s) ready${rows.length > 10000 ? " — more than 10,000 is refused" : ""}.` }) : "",
      r.problems.length ? h("ul", { class: "problems" }, r.problems.map((p) => h("li", { text: p }))) : "");
    launch.disabled = !rows.length || r.problems.length > 0 || !pick.value || rows.length > 10000;
  };
  const showStages = () => {
    const p = pipelines.find((x) => x.id === pick.value);
    stagesInfo.textContent = p ? p.stages.map((s) => `${s.stage_key} (${s.cardinality}${s.requires_approval ? ", approval" : ""})`).join(" → ") : "";
    reparse();
  };
  rowsText.addEventListener("input", reparse);
  pick.addEventListener("change", showStages);
  file.addEventListener("change", async () => { if (file.files[0]) { rowsText.value = await file.files[0].text(); reparse(); } });
  launch.addEventListener("click", async () => {
    const p = pipelines.find((x) => x.id === pick.value);
    launch.disabled = true;
    try {
      const r = await api("POST", "/batches", { template_id: p.root_template_id, orchestrator_config_id: p.id, rows, name: name.value.trim() || null });
      toast(`Launched ${r.task_ids.length} task(s)`);
      location.hash = `#/batch/${r.batch_id}`;
    } catch (e) { put(err, errorBox(e)); launch.disabled = false; }
  });

  // Import a bundle: orchestration.json and its prompts/*.md.
  const bundleFiles = h("input", { id: "import-files", type: "file", multiple: true, accept: ".json,.md" });
  const importBtn = h("button", { type: "button", id: "import-submit" }, "Import");
  const importOut = h("div", { "aria-live": "polite" });
  importBtn.addEventListener("click", async () => {
    const files = [...bundleFiles.files];
    const orch = files.find((f) => f.name === "orchestration.json");
    if (!orch) { put(importOut, errorBox(new Error("Choose the bundle's orchestration.json and its prompt files (*.md)."))); return; }
    importBtn.disabled = true;
    try {
      const prompts = {};
      for (const f of files) if (f.name.endsWith(".md")) prompts[f.name] = await f.text();
      const r = await api("POST", "/pipelines", { orchestration: JSON.parse(await orch.text()), prompts });
      put(importOut, h("p", { class: "ok-text", text: `Imported: ${r.template_ids.length} stage(s).` }));
      await loadPipelines(r.config_id);
    } catch (e) { put(importOut, errorBox(e)); } finally { importBtn.disabled = false; }
  });
  const loadPipelines = async (select) => {
    const r = await api("GET", "/pipelines");
    pipelines = r.items.filter((p) => p.root_template_id);
    put(pick, ...pipelines.map((p) => h("option", { value: p.id }, p.name)));
    if (!pipelines.length) put(pick, h("option", { value: "" }, "No pipelines yet — import a bundle below"));
    if (select) pick.value = select;
    showStages();
  };
  put(view, h("h1", { text: "Launch a batch" }), err,
    h("div", { class: "card" },
      h("label", { for: "launch-pipeline", text: "Pipeline" }), pick, stagesInfo,
      h("label", { for: "launch-name", text: "Name" }), name,
      h("label", { for: "launch-rows", text: "Input rows: JSON lines (one object per line) or CSV with a header row" }), rowsText,
      h("div", { class: "row" }, h("label", { for: "launch-file", text: "or upload a file" }), file),
      parsed, h("div", { class: "row" }, launch)),
    h("h2", { text: "Import a pipeline bundle" }),
    h("div", { class: "card" },
      h("p", { class: "small muted", text: "Choose orchestration.json and the prompt files (prompts/*.md) of a bundle. Re-importing a bundle updates it in place." }),
      h("div", { class: "row" }, bundleFiles, importBtn), importOut));
  try { await loadPipelines(); } catch (e) { put(err, errorBox(e)); }
}

async function viewKeys() {
  const gen = generation;
  const body = h("div", { id: "keys" });
  put(view, h("h1", { text: "API keys" }),
    h("p", { class: "small muted", text: "Health of your model API keys. Key material is never shown or sent to this page." }), body);
  const load = async () => {
    let r;
    try { r = await api("GET", "/keys"); } catch (e) { put(body, errorBox(e)); return; }
    if (!r.items.length) { put(body, h("div", { class: "card empty", text: "You have no API keys stored. Tasks use the service's default key, if it has one." })); return; }
    const now = Date.now();
    put(body, h("div", { class: "card" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Key", "State", "Blocked until", "Reason", "Last used", "Requests"].map((x, i) => h("th", { class: i > 3 ? "hide-narrow" : "", text: x })))),
      h("tbody", {}, r.items.map((k) => {
        const blocked = k.blocked_until && Date.parse(k.blocked_until) > now;
        return h("tr", { "data-key": k.key_name },
          h("td", {}, h("strong", { text: k.key_name }), h("div", { class: "small muted", text: `${k.provider} · ${k.model_preference}${k.project ? ` · ${k.project}` : ""}` })),
          h("td", {}, badge(!k.is_active ? "inactive" : blocked ? "blocked" : "active")),
          h("td", { text: blocked ? fmtTime(k.blocked_until) : "—" }),
          h("td", { text: (!k.is_active && k.deactivated_reason) || (blocked && k.block_reason) || k.last_error_code || "—" }),
          h("td", { class: "hide-narrow", text: fmtTime(k.last_used_at) }),
          h("td", { class: "hide-narrow", text: `${fmtNum(k.total_requests)} (${fmtNum(k.failed_requests)} failed)` }));
      })))));
  };
  await load();
  every(gen, 10000, load);
}

function viewSignIn() {
  const err = h("div");
  const email = h("input", { id: "signin-email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "signin-password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary", id: "signin-submit" }, "Sign in");
  const form = h("form", { class: "card" },
    h("label", { for: "signin-email", text: "Email" }), email,
    h("label", { for: "signin-password", text: "Password" }), password,
    h("div", { class: "row", style: { marginTop: ".8rem" } }, submit));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try { await signInWithPassword(email.value, password.value); afterSignIn(); } catch (e) { put(err, errorBox(e)); submit.disabled = false; }
  });
  const dev = settings.dev_sign_in ? h("div", { class: "card" },
    h("p", { text: "Development mode: sign in as the demo user, without a password." }),
    h("button", { type: "button", class: "primary", id: "dev-signin", onclick: async () => {
      try { await signInDev(); afterSignIn(); } catch (e) { put(err, errorBox(e)); }
    } }, "Sign in as the demo user")) : null;
  put(view, h("div", { class: "signin" }, h("h1", { text: "Sign in" }), err, dev, settings.dev_sign_in ? null : form));
  (dev ? dev.querySelector("button") : email).focus();
}

function afterSignIn() {
  if (!location.hash || location.hash === "#/signin") location.hash = "#/batches";
  else route();
}

// ---------------------------------------------------------------------------
// Router

function route() {
  stopTimers();
  const s = currentSession();
  document.getElementById("nav").hidden = !s;
  document.getElementById("who").hidden = !s;
  if (!s) { viewSignIn(); return; }
  document.getElementById("who-name").textContent = s.email || s.user_id;
  const [path, query] = (location.hash.slice(1) || "/batches").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("[data-nav]").forEach((a) => {
    if (a.dataset.nav === (parts[0] === "batch" || parts[0] === "task" ? "batches" : parts[0])) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const gen = generation;
  const run = (p) => p.catch((e) => mount(gen, errorBox(e)));
  switch (parts[0]) {
    case "batch": return run(viewBatch(parts[1]));
    case "task": return run(viewTask(parts[1]));
    case "approvals": return run(viewApprovals(params));
    case "launch": return run(viewLaunch());
    case "keys": return run(viewKeys());
    default: return run(viewBatches(params));
  }
}

window.addEventListener("hashchange", () => { route(); view.focus({ preventScroll: true }); });
window.addEventListener("console:visible", route);
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  put(document.getElementById("toast"));
  location.hash = "#/signin";
  route();
});
whenSignedOut(() => { stopTimers(); route(); });

loadSettings().then((s) => { settings = s; route(); }).catch((e) => put(view, errorBox(e)));
