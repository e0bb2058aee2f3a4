// Input rows for a launch: JSON lines (one object per line, or one JSON
// array of objects) or CSV with a header row (values stay strings).

export function parseRows(text) {
  const t = text.trim();
  if (!t) return { rows: [], problems: ["Paste or upload at least one row."] };
  if (t[0] === "[" || t[0] === "{") return parseJSON(t);
  return parseCSV(t);
}

function parseJSON(t) {
  if (t[0] === "[") {
    try {
      const a = JSON.parse(t);
      const bad = a.findIndex((r) => !r || typeof r !== "object" || Array.isArray(r));
      return bad >= 0 ? { rows: [], problems: [`Item ${bad + 1} is not an object.`] } : { rows: a, problems: [] };
    } catch (e) { return { rows: [], problems: [`Not valid JSON: ${e.message}`] }; }
  }
  const rows = [];
  const problems = [];
  t.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const v = JSON.parse(line);
      if (!v || typeof v !== "object" || Array.isArray(v)) problems.push(`Line ${i + 1} is not a JSON object.`);
      else rows.push(v);
    } catch (e) { problems.push(`Line ${i + 1}: ${e.message}`); }
  });
  return { rows, problems: problems.slice(0, 10) };
}

// parseCSV reads RFC 4180 CSV (quoted fields, doubled quotes, newlines in
// quotes).
export function parseCSV(t) {
  const records = [];
  let rec = [], field = "", q = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (q) {
      if (c === '"' && t[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') q = false;
      else field += c;
    } else if (c === '"' && field === "") q = true;
    else if (c === ",") { rec.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && t[i + 1] === "\n") i++;
      rec.push(field); records.push(rec); rec = []; field = "";
    } else field += c;
  }
  if (q) return { rows: [], problems: ["A quoted CSV field is not closed."] };
  rec.push(field); records.push(rec);
  const nonEmpty = records.filter((r) => r.some((f) => f.trim() !== ""));
  if (nonEmpty.length < 2) return { rows: [], problems: ["CSV needs a header row and at least one data row."] };
  const header = nonEmpty[0].map((h) => h.trim());
  if (header.some((h) => !h)) return { rows: [], problems: ["Every CSV column needs a name in the header row."] };
  const problems = [];
  const rows = nonEmpty.slice(1).map((r, i) => {
    if (r.length !== header.length) problems.push(`CSV row ${i + 2} has ${r.length} fields, the header ${header.length}.`);
    const o = {};
    header.forEach((h, j) => { o[h] = r[j] ?? ""; });
    return o;
  });
  return { rows, problems: problems.slice(0, 10) };
}
