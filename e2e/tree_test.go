package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// template is a prompt_templates row as the tree check reads it.
type template struct {
	ID       string
	StageKey string
	Config   map[string]any
	Next     []string
}

func (s *stack) templates() map[string]template {
	rows, err := s.db.Query(context.Background(), `select id, coalesce(stage_key, ''), coalesce(stage_config, '{}'::jsonb),
		coalesce(next_stage_template_ids, '[]'::jsonb) from public.prompt_templates`)
	require.NoError(s.t, err)
	defer rows.Close()
	out := map[string]template{}
	for rows.Next() {
		var tp template
		var cfg, next []byte
		require.NoError(s.t, rows.Scan(&tp.ID, &tp.StageKey, &cfg, &next))
		require.NoError(s.t, json.Unmarshal(cfg, &tp.Config))
		require.NoError(s.t, json.Unmarshal(next, &tp.Next))
		out[tp.ID] = tp
	}
	require.NoError(s.t, rows.Err())
	return out
}

// edge kinds (docs/pipeline-semantics.md §2).
const (
	edgeOne   = "1:1"
	edgeSplit = "1:N"
	edgeMerge = "merge"
	edgeJoin  = "join"
)

func cardinality(cfg map[string]any) string {
	c, _ := cfg["cardinality"].(string)
	switch strings.ToLower(c) {
	case "1:n", "one_to_many":
		return "1:N"
	case "n:1", "many_to_one":
		return "N:1"
	}
	return "1:1"
}

func dependsOn(cfg map[string]any) []string {
	raw, _ := cfg["dependsOn"].([]any)
	out := make([]string, 0, len(raw))
	for _, d := range raw {
		out = append(out, fmt.Sprint(d))
	}
	return out
}

func edgeKind(parentStage string, succ template) string {
	deps := dependsOn(succ.Config)
	switch {
	case len(deps) > 1 || (len(deps) == 1 && deps[0] != parentStage):
		return edgeJoin
	case cardinality(succ.Config) == "N:1":
		return edgeMerge
	case cardinality(succ.Config) == "1:N":
		return edgeSplit
	}
	return edgeOne
}

// jsonPath resolves a split path the way orchable.json_path does.
func jsonPath(doc any, path string) any {
	path = strings.TrimSpace(path)
	if path == "" || path == "." || path == "result" {
		return doc
	}
	if rest, ok := strings.CutPrefix(path, "result."); ok {
		if m, isObj := doc.(map[string]any); !isObj || m["result"] == nil {
			path = rest
		}
	}
	cur := doc
	for seg := range strings.SplitSeq(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			cur = v[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(v) {
				return nil
			}
			cur = v[i]
		default:
			return nil
		}
	}
	return cur
}

func decode(raw json.RawMessage) any {
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}

func result(t task) any {
	if e := decode(t.Edited); e != nil {
		return e
	}
	return decode(t.Output)
}

func objMerge(a any, kv map[string]any) map[string]any {
	out := map[string]any{}
	if m, ok := a.(map[string]any); ok {
		maps.Copy(out, m)
	}
	maps.Copy(out, kv)
	return out
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var x, y any
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}

// treeReport is the outcome of checkTree.
type treeReport struct {
	Tasks      int
	Roots      int
	ByStage    map[string]int
	ByStatus   map[string]int
	Missing    int // expected children that do not exist
	Duplicated int // children beyond the expected ones (or unexplained tasks)
	Problems   []string
}

func (r *treeReport) problemf(format string, args ...any) {
	if len(r.Problems) < 40 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// checkTree derives the exact expected task tree of the batches from the
// templates and the stored outputs, and compares: child counts per parent
// and stage, parents, root ids, hierarchy paths, step numbers and the
// inputs of 1:1, split, merge and join children (docs/pipeline-semantics.md).
func (s *stack) checkTree(batchIDs ...uuid.UUID) treeReport {
	s.t.Helper()
	tasks := s.tasks("batch_id = any($1)", batchIDs)
	tpls := s.templates()
	rep := treeReport{Tasks: len(tasks), ByStage: map[string]int{}, ByStatus: map[string]int{}}
	byID := map[uuid.UUID]task{}
	for _, t := range tasks {
		byID[t.ID] = t
		rep.ByStage[t.StageKey]++
		rep.ByStatus[t.Status]++
	}
	explained := map[uuid.UUID]bool{}
	type groupKey struct {
		parent uuid.UUID
		stage  string
	}
	groups := map[groupKey][]task{}
	barrierKids := map[string][]task{} // successor template id → tasks
	for _, t := range tasks {
		if t.ParentID == nil {
			rep.Roots++
			explained[t.ID] = true
			if len(t.Path) != 0 || t.RootID == nil || *t.RootID != t.ID || t.Step != 1 {
				rep.problemf("root %s: hierarchy_path %v, root %v, step %d", t.ID, t.Path, t.RootID, t.Step)
			}
			continue
		}
		p, ok := byID[*t.ParentID]
		if !ok {
			rep.problemf("task %s (%s): parent %s is not in the batch", t.ID, t.StageKey, *t.ParentID)
			continue
		}
		wantRoot := p.ID
		if p.RootID != nil {
			wantRoot = *p.RootID
		}
		if t.RootID == nil || *t.RootID != wantRoot {
			rep.problemf("task %s (%s): root %v, want %s", t.ID, t.StageKey, t.RootID, wantRoot)
		}
		if !slices.Equal(t.Path, append(slices.Clone(p.Path), p.ID.String())) {
			rep.problemf("task %s (%s): hierarchy_path %v, want %v + %s", t.ID, t.StageKey, t.Path, p.Path, p.ID)
		}
		if t.Step != p.Step+1 {
			rep.problemf("task %s (%s): step %d, parent step %d", t.ID, t.StageKey, t.Step, p.Step)
		}
		pt := tpls[p.TemplateID]
		if slices.Contains(pt.Next, t.TemplateID) {
			switch edgeKind(p.StageKey, tpls[t.TemplateID]) {
			case edgeMerge, edgeJoin:
				barrierKids[t.TemplateID] = append(barrierKids[t.TemplateID], t)
				continue
			}
		}
		groups[groupKey{p.ID, t.TemplateID}] = append(groups[groupKey{p.ID, t.TemplateID}], t)
	}

	// 1:1 and split children of every completed task.
	barrierSuccs := map[string]bool{}
	for _, p := range tasks {
		pt, ok := tpls[p.TemplateID]
		if !ok {
			continue
		}
		for _, sid := range pt.Next {
			succ, ok := tpls[sid]
			if !ok {
				rep.problemf("template %s: successor %s not found", pt.ID, sid)
				continue
			}
			kind := edgeKind(p.StageKey, succ)
			if kind == edgeMerge || kind == edgeJoin {
				barrierSuccs[sid] = true
				continue
			}
			got := groups[groupKey{p.ID, sid}]
			for _, c := range got {
				explained[c.ID] = true
			}
			if p.Status != "completed" && p.Status != "approved" {
				if len(got) > 0 {
					rep.Duplicated += len(got)
					rep.problemf("task %s (%s, %s) has %d %s children", p.ID, p.StageKey, p.Status, len(got), succ.StageKey)
				}
				continue
			}
			var want []map[string]any // expected inputs, in order
			switch kind {
			case edgeOne:
				if _, ok := succ.Config["return_along_with"]; ok {
					want = []map[string]any{nil}
				} else {
					want = []map[string]any{{"=": result(p)}}
				}
			case edgeSplit:
				arr, ok := jsonPath(result(p), fmt.Sprint(succ.Config["split_path"])).([]any)
				if !ok {
					rep.problemf("task %s (%s) completed but its split_path %v is not an array", p.ID, p.StageKey, succ.Config["split_path"])
					continue
				}
				if mode, _ := succ.Config["split_mode"].(string); mode == "per_batch" {
					size := 10
					if f, ok := succ.Config["batch_size"].(float64); ok && f >= 1 {
						size = int(f)
					}
					for b := 0; b*size < len(arr); b++ {
						want = append(want, objMerge(decode(p.Input), map[string]any{"items": arr[b*size : min(len(arr), (b+1)*size)], "_batch_index": b}))
					}
				} else {
					for i, item := range arr {
						want = append(want, objMerge(decode(p.Input), map[string]any{"item": item, "_split_index": i, "_split_total": len(arr)}))
					}
				}
			}
			if len(got) < len(want) {
				rep.Missing += len(want) - len(got)
				rep.problemf("task %s (%s): %d %s children, want %d", p.ID, p.StageKey, len(got), succ.StageKey, len(want))
			} else if len(got) > len(want) {
				rep.Duplicated += len(got) - len(want)
				rep.problemf("task %s (%s): %d %s children, want %d", p.ID, p.StageKey, len(got), succ.StageKey, len(want))
			}
			// Inputs: every expected input is matched by one child.
			used := map[uuid.UUID]bool{}
			for _, w := range want {
				if w == nil {
					continue
				}
				var exp any = w
				if v, ok := w["="]; ok {
					exp = v
				}
				found := false
				for _, c := range got {
					if !used[c.ID] && jsonEqual(decode(c.Input), exp) {
						used[c.ID], found = true, true
						break
					}
				}
				if !found && len(got) >= len(want) {
					rep.problemf("task %s (%s): no %s child has the expected input %.300s", p.ID, p.StageKey, succ.StageKey, mustJSON(exp))
				}
			}
		}
	}

	// Merge and join children: exactly one per scope that has work.
	for sid := range barrierSuccs {
		succ := tpls[sid]
		deps := dependsOn(succ.Config)
		join := len(deps) > 1 || cardinality(succ.Config) != "N:1"
		grouping, _ := succ.Config["batch_grouping"].(string)
		scopeOf := func(t task) string {
			switch {
			case grouping == "global":
				return "launch"
			case grouping == "isolated" || (join && grouping != "batch"):
				return "root:" + rootOf(t).String()
			}
			return "batch:" + t.BatchID.String()
		}
		type scopeState struct {
			depTasks map[string][]task
		}
		scopes := map[string]*scopeState{}
		for _, t := range tasks {
			if !slices.Contains(deps, t.StageKey) {
				continue
			}
			sc := scopes[scopeOf(t)]
			if sc == nil {
				sc = &scopeState{depTasks: map[string][]task{}}
				scopes[scopeOf(t)] = sc
			}
			sc.depTasks[t.StageKey] = append(sc.depTasks[t.StageKey], t)
		}
		kids := map[string][]task{}
		for _, c := range barrierKids[sid] {
			explained[c.ID] = true
			kids[scopeOf(c)] = append(kids[scopeOf(c)], c)
		}
		for name, sc := range scopes {
			want := 1
			completed := 0
			for _, d := range deps {
				if len(sc.depTasks[d]) == 0 {
					want = 0 // a join waits for a task of every stage
				}
				for _, t := range sc.depTasks[d] {
					if t.Status == "completed" || t.Status == "approved" {
						completed++
					}
				}
			}
			if completed == 0 {
				want = 0
			}
			got := kids[name]
			if len(got) < want {
				rep.Missing += want - len(got)
				rep.problemf("scope %s: no %s barrier child", name, succ.StageKey)
			}
			if len(got) > want {
				rep.Duplicated += len(got) - want
				rep.problemf("scope %s: %d %s barrier children, want %d", name, len(got), succ.StageKey, want)
			}
			if len(got) != 1 || want != 1 {
				continue
			}
			in, _ := decode(got[0].Input).(map[string]any)
			if !join {
				var outs, failed []string
				for _, t := range sc.depTasks[deps[0]] {
					switch t.Status {
					case "completed", "approved":
						outs = append(outs, mustJSON(result(t)))
					case "failed", "cancelled":
						failed = append(failed, t.ID.String())
					}
				}
				mp, _ := succ.Config["merge_path"].(string)
				if mp == "" {
					mp = "output_data"
				}
				arr, _ := in[mp].([]any)
				var gotOuts []string
				for _, a := range arr {
					gotOuts = append(gotOuts, mustJSON(a))
				}
				sort.Strings(outs)
				sort.Strings(gotOuts)
				if mp == "output_data" && !slices.Equal(outs, gotOuts) {
					rep.problemf("scope %s: merge input holds %d outputs, want the %d completed %s outputs", name, len(gotOuts), len(outs), deps[0])
				}
				if fmt.Sprint(in["_merged_from_count"]) != strconv.Itoa(len(outs)) || fmt.Sprint(in["_failed_count"]) != strconv.Itoa(len(failed)) {
					rep.problemf("scope %s: _merged_from_count %v _failed_count %v, want %d and %d", name, in["_merged_from_count"], in["_failed_count"], len(outs), len(failed))
				}
				continue
			}
			// Join: root input plus each dependency's output under its stage key.
			root := byID[rootOf(got[0])]
			exp := objMerge(decode(root.Input), nil)
			for _, d := range deps {
				var done []task
				for _, t := range sc.depTasks[d] {
					if t.Status == "completed" || t.Status == "approved" {
						done = append(done, t)
					}
				}
				switch len(done) {
				case 0:
				case 1:
					exp[d] = result(done[0])
				default:
					var arr []any
					for _, t := range done {
						arr = append(arr, result(t))
					}
					exp[d] = arr
				}
			}
			if !jsonEqual(in, exp) {
				rep.problemf("scope %s: join %s input %.300s, want %.300s", name, succ.StageKey, mustJSON(in), mustJSON(exp))
			}
		}
	}
	for _, t := range tasks {
		if !explained[t.ID] {
			rep.Duplicated++
			rep.problemf("task %s (%s) is not an expected child of its parent %v", t.ID, t.StageKey, t.ParentID)
		}
	}
	return rep
}

func rootOf(t task) uuid.UUID {
	if t.RootID != nil {
		return *t.RootID
	}
	return t.ID
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// requireTree fails the test unless the tree is exact.
func (s *stack) requireTree(rep treeReport) {
	s.t.Helper()
	require.Empty(s.t, rep.Problems, "task tree problems (missing %d, duplicated %d)", rep.Missing, rep.Duplicated)
	require.Zero(s.t, rep.Missing)
	require.Zero(s.t, rep.Duplicated)
}
