package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// GlobalContextVar is the placeholder name under which the batch's
// documents are available: %%GLOBAL_CONTEXT%%.
const GlobalContextVar = "GLOBAL_CONTEXT"

// Vars are the values a prompt's placeholders resolve against. The zero
// value defines only GLOBAL_CONTEXT (as an empty string).
//
// A placeholder's first path segment is looked up in this order:
//
//  1. GLOBAL_CONTEXT: the documents of GlobalContext as text blocks (see
//     FormatGlobalContext); GLOBAL_CONTEXT.<name> is one document's text.
//  2. A top-level member of Input (the task's input_data).
//  3. A stage output in Stages, by stage key.
//  4. input_data or input: the whole Input, without the engine's
//     bookkeeping members (those whose name starts with "_", such as
//     _split_index or _orchestrator_config_id; they stay addressable by
//     name). As in the original, an input member of the same name wins.
//  5. A task field in Task.
//
// The remaining segments walk into objects by member name and into arrays
// by index (item.tags.0).
type Vars struct {
	// Input is the task's input_data, normally a JSON object. Empty or null
	// means no input.
	Input json.RawMessage
	// Stages are stage outputs by stage key. A join child already carries
	// its dependencies' outputs inside Input; Stages is for callers that
	// hold them separately.
	Stages map[string]json.RawMessage
	// GlobalContext is the batch's global_context: document name → text.
	GlobalContext map[string]string
	// Task holds other task fields (id, batch_id, lo_code, …) with the
	// lowest precedence, as the original's {...task, ...input} dictionary.
	Task map[string]json.RawMessage

	// documents is FormatGlobalContext(GlobalContext) when the caller made
	// it already (once for the tasks of a batch); empty: made here.
	documents string
	// task, when Task is nil, is the task whose fields Task would hold:
	// they are made only if a placeholder reaches them (most name the
	// input's members), as taskFields makes them, at most once per prompt.
	task *lazyFields
}

// lazyFields is a task's prompt fields, made on first use (one goroutine).
type lazyFields struct {
	task   *Task
	fields map[string]json.RawMessage
}

func (l *lazyFields) get() map[string]json.RawMessage {
	if l.fields == nil {
		l.fields = taskFields(l.task)
	}
	return l.fields
}

// documentsText is the documents' text, FormatGlobalContext(GlobalContext).
func (v *Vars) documentsText() string {
	if v.documents != "" {
		return v.documents
	}
	return FormatGlobalContext(v.GlobalContext)
}

// MissingVariableError is returned by Render when a %%key%% placeholder has
// no value. It is a permanent failure of the task: rendering again gives the
// same result.
type MissingVariableError struct {
	// Key is the placeholder's path as written, e.g. "input.lo_code".
	Key string
}

// Error implements error.
func (e *MissingVariableError) Error() string {
	return fmt.Sprintf("prompt placeholder %%%%%s%%%% has no value (not in the task's input_data, the stage outputs or %s)",
		e.Key, GlobalContextVar)
}

// ErrInvalidInput is returned (wrapped) by Render when Vars.Input is not
// valid JSON.
var ErrInvalidInput = errors.New("pipeline: input_data is not valid JSON")

// Render substitutes the placeholders of tmpl.
//
// Two forms are recognised, each with optional spaces or tabs inside the
// delimiters: %%key%% and {{key}}. A key is a dot path of segments made of
// ASCII letters, digits, "_" and "-" (not starting with "-"). Values render
// as follows: strings as they are, numbers and booleans as JSON literals,
// null as the empty string, objects and arrays as JSON indented by two
// spaces (member order preserved).
//
// An unknown %%key%% fails with *MissingVariableError. An unknown {{key}}
// stays as written, because prompts also use {{…}} for content blanks.
// Substituted text is never scanned again, so values cannot inject
// placeholders.
func Render(tmpl string, vars Vars) (string, error) {
	out, _, err := render(tmpl, vars, false)
	return out, err
}

// documentsAbove replaces %%GLOBAL_CONTEXT%% when RenderShared moved the
// documents to the start of the prompt.
const documentsAbove = "(the documents above)"

// RenderShared renders tmpl like Render and also returns shared: the start
// of the prompt that is the same for every task of the batch's stage (the
// template's fixed text and the batch's documents up to the first
// placeholder that depends on the task). Sent first, with the system
// instruction, it is a stable prefix Gemini can cache (implicitly, or as an
// explicit cached content).
//
// When the template places %%GLOBAL_CONTEXT%% after task-dependent text, the
// documents are moved to the start of the prompt (followed by a blank line)
// and the placeholder reads "(the documents above)", so the large shared
// part still comes first. prompt always starts with shared.
func RenderShared(tmpl string, vars Vars) (prompt, shared string, err error) {
	prompt, sharedEnd, err := render(tmpl, vars, false)
	if err != nil {
		return "", "", err
	}
	docs := vars.documentsText()
	if docs == "" || strings.Contains(prompt[:sharedEnd], docs) || !mentionsWholeContext(tmpl[sharedTemplateEnd(tmpl, vars):]) {
		return prompt, prompt[:sharedEnd], nil
	}
	moved, _, err := render(tmpl, vars, true)
	if err != nil {
		return "", "", err
	}
	head := docs + "\n\n"
	return head + moved, head, nil
}

// mentionsWholeContext reports a %%GLOBAL_CONTEXT%% (or {{…}}) placeholder in s.
func mentionsWholeContext(s string) bool {
	for i := 0; i < len(s); {
		j := indexOpen(s[i:])
		if j < 0 {
			return false
		}
		i += j
		key, n, ok := scanPlaceholder(s[i:])
		if !ok {
			i++
			continue
		}
		if key == GlobalContextVar {
			return true
		}
		i += n
	}
	return false
}

// sharedTemplateEnd is the offset in tmpl of the first task-dependent
// placeholder (len(tmpl) when there is none).
func sharedTemplateEnd(tmpl string, vars Vars) int {
	r, err := newResolver(vars)
	if err != nil {
		return 0
	}
	for i := 0; i < len(tmpl); {
		j := indexOpen(tmpl[i:])
		if j < 0 {
			return len(tmpl)
		}
		i += j
		key, n, ok := scanPlaceholder(tmpl[i:])
		if !ok {
			i++
			continue
		}
		if first, _, _ := strings.Cut(key, "."); first != GlobalContextVar {
			if _, found := r.lookup(key); found {
				return i
			}
		}
		i += n
	}
	return len(tmpl)
}

// render substitutes the placeholders of tmpl and returns the length of the
// output's shared start (see RenderShared). With docsMoved the whole
// GLOBAL_CONTEXT renders as documentsAbove.
func render(tmpl string, vars Vars, docsMoved bool) (string, int, error) {
	r, err := newResolver(vars)
	if err != nil {
		return "", 0, err
	}
	sharedEnd, frozen := 0, false
	var b strings.Builder
	b.Grow(len(tmpl))
	for i := 0; i < len(tmpl); {
		j := indexOpen(tmpl[i:])
		if j < 0 {
			b.WriteString(tmpl[i:])
			break
		}
		b.WriteString(tmpl[i : i+j])
		i += j
		key, n, ok := scanPlaceholder(tmpl[i:])
		if !ok {
			b.WriteByte(tmpl[i])
			i++
			continue
		}
		val, found := r.lookup(key)
		first, _, _ := strings.Cut(key, ".")
		if found && first != GlobalContextVar && !frozen {
			sharedEnd, frozen = b.Len(), true
		}
		switch {
		case found && docsMoved && key == GlobalContextVar:
			b.WriteString(documentsAbove)
		case found:
			b.WriteString(val)
		case tmpl[i] == '%':
			return "", 0, &MissingVariableError{Key: key}
		default:
			b.WriteString(tmpl[i : i+n])
		}
		i += n
	}
	if !frozen {
		sharedEnd = b.Len()
	}
	return b.String(), sharedEnd, nil
}

// FormatGlobalContext renders documents the way the original engine did:
// one block per document, in name order, separated by a blank line:
//
//	--- DOCUMENT: <name> ---
//	<text>
//	--- END OF DOCUMENT ---
func FormatGlobalContext(docs map[string]string) string {
	if len(docs) == 0 {
		return "" // most tasks: no documents, and no sorted copy of no keys
	}
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(docs)) {
		if i > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString("--- DOCUMENT: ")
		b.WriteString(name)
		b.WriteString(" ---\n")
		b.WriteString(docs[name])
		b.WriteString("\n--- END OF DOCUMENT ---")
	}
	return b.String()
}

// indexOpen returns the index of the first "%%" or "{{" in s, or -1.
func indexOpen(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if c := s[i]; (c == '%' || c == '{') && s[i+1] == c {
			return i
		}
	}
	return -1
}

// scanPlaceholder parses a placeholder at the start of s (which starts with
// "%%" or "{{") and returns its key and length.
func scanPlaceholder(s string) (string, int, bool) {
	closing := "%%"
	if s[0] == '{' {
		closing = "}}"
	}
	i := skipBlanks(s, 2)
	start := i
	for i < len(s) && (isKeyByte(s[i]) || s[i] == '.') {
		i++
	}
	if !validKey(s[start:i]) {
		return "", 0, false
	}
	key := s[start:i]
	i = skipBlanks(s, i)
	if !strings.HasPrefix(s[i:], closing) {
		return "", 0, false
	}
	return key, i + len(closing), true
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// validKey reports whether key is a non-empty dot path whose segments are
// non-empty and do not start with "-".
func validKey(key string) bool {
	if key == "" {
		return false
	}
	for seg := range strings.SplitSeq(key, ".") {
		if seg == "" || seg[0] == '-' {
			return false
		}
	}
	return true
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// resolver answers lookups for one Render call (one goroutine).
type resolver struct {
	vars  Vars
	input map[string]json.RawMessage // nil when Input is not an object
	// whole is Input without bookkeeping members, built from kept on first
	// use: most templates name members, not the whole input.
	whole json.RawMessage
	kept  []member
}

type member struct {
	key string
	val json.RawMessage
}

func newResolver(vars Vars) (*resolver, error) {
	r := &resolver{vars: vars}
	raw := bytes.TrimSpace(vars.Input)
	if len(raw) == 0 || string(raw) == "null" {
		r.whole = json.RawMessage("{}")
		return r, nil
	}
	if !json.Valid(raw) {
		return nil, ErrInvalidInput
	}
	if raw[0] != '{' {
		r.whole = raw
		return r, nil
	}
	members, err := objectMembers(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	r.input = make(map[string]json.RawMessage, len(members))
	r.kept = make([]member, 0, len(members))
	for _, m := range members {
		r.input[m.key] = m.val
		if !strings.HasPrefix(m.key, "_") {
			r.kept = append(r.kept, m)
		}
	}
	return r, nil
}

// wholeInput is Input without its bookkeeping members.
func (r *resolver) wholeInput() json.RawMessage {
	if r.whole == nil {
		r.whole = encodeObject(r.kept)
	}
	return r.whole
}

// lookup resolves a dot path to its rendered text.
func (r *resolver) lookup(key string) (string, bool) {
	first, rest, _ := strings.Cut(key, ".")
	if first == GlobalContextVar {
		if rest == "" {
			return r.vars.documentsText(), true
		}
		doc, ok := r.vars.GlobalContext[rest]
		return doc, ok
	}
	val, ok := r.root(first)
	if !ok {
		return "", false
	}
	if rest != "" {
		for seg := range strings.SplitSeq(rest, ".") {
			if val, ok = child(val, seg); !ok {
				return "", false
			}
		}
	}
	return renderValue(val), true
}

func (r *resolver) root(name string) (json.RawMessage, bool) {
	if v, ok := r.input[name]; ok {
		return v, true
	}
	if v, ok := r.vars.Stages[name]; ok {
		return v, true
	}
	if name == "input_data" || name == "input" {
		return r.wholeInput(), true
	}
	if r.vars.Task == nil && r.vars.task != nil {
		v, ok := r.vars.task.get()[name]
		return v, ok
	}
	v, ok := r.vars.Task[name]
	return v, ok
}

// child returns the member seg of an object or the element seg of an array.
func child(raw json.RawMessage, seg string) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case '{':
		members, err := objectMembers(raw)
		if err != nil {
			return nil, false
		}
		var found json.RawMessage
		for _, m := range members {
			if m.key == seg {
				found = m.val // the last duplicate wins, as in JSON.parse
			}
		}
		return found, found != nil
	case '[':
		idx, err := strconv.Atoi(seg)
		if err != nil || idx < 0 {
			return nil, false
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil || idx >= len(elems) {
			return nil, false
		}
		return elems[idx], true
	default:
		return nil, false
	}
}

// renderValue turns a JSON value into prompt text.
func renderValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case 'n':
		return ""
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return string(raw)
		}
		return s
	case '{', '[':
		// The output of a stage without an output schema is {"result": "<text>"}:
		// a later stage referring to it ({{stage_key}}) wants the text.
		if raw[0] == '{' {
			var only map[string]json.RawMessage
			if json.Unmarshal(raw, &only) == nil && len(only) == 1 {
				if r, ok := only["result"]; ok && len(bytes.TrimSpace(r)) > 0 && bytes.TrimSpace(r)[0] == '"' {
					return renderValue(r)
				}
			}
		}
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return string(raw)
		}
		return b.String()
	default:
		return string(raw)
	}
}

// objectMembers returns a JSON object's members in document order, each
// value the exact bytes of raw that hold it (a slice of raw, not a copy).
//
// raw must be valid JSON (json.Valid): the input and the stage outputs it
// reads have been checked or come from jsonb. The scan checks the object's
// structure (members, strings, nesting), not every scalar's syntax. It is
// about ten times cheaper than json.Decoder's tokens (BenchmarkObjectMembers),
// and every task's render reads its input this way.
func objectMembers(raw json.RawMessage) ([]member, error) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, errNotObject
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return nil, nil
	}
	var out []member
	for {
		if i >= len(raw) || raw[i] != '"' {
			return nil, errBadObject
		}
		end, err := stringEnd(raw, i)
		if err != nil {
			return nil, err
		}
		key, err := memberKey(raw[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return nil, errBadObject
		}
		i = skipSpace(raw, i+1)
		if end, err = valueEnd(raw, i); err != nil {
			return nil, err
		}
		out = append(out, member{key: key, val: raw[i:end:end]})
		i = skipSpace(raw, end)
		if i >= len(raw) {
			return nil, errBadObject
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return out, nil
		default:
			return nil, errBadObject
		}
	}
}

var (
	errNotObject = errors.New("not a JSON object")
	errBadObject = errors.New("malformed JSON object")
)

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the string that starts at raw[i] (a quote).
func stringEnd(raw []byte, i int) (int, error) {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++ // the escaped byte; \uXXXX's digits need no care
		case '"':
			return j + 1, nil
		}
	}
	return 0, errBadObject
}

// valueEnd is the index after the value that starts at raw[i].
func valueEnd(raw []byte, i int) (int, error) {
	if i >= len(raw) {
		return 0, errBadObject
	}
	switch raw[i] {
	case '"':
		return stringEnd(raw, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(raw); j++ {
			switch raw[j] {
			case '"':
				end, err := stringEnd(raw, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errBadObject
	default: // a number, true, false or null
		j := i
		for j < len(raw) && !scalarEnds(raw[j]) {
			j++
		}
		if j == i {
			return 0, errBadObject
		}
		return j, nil
	}
}

func scalarEnds(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// memberKey is the text of a quoted member name, decoded as encoding/json
// decodes it (escapes; invalid UTF-8 as U+FFFD).
func memberKey(quoted []byte) (string, error) {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), nil
	}
	var key string
	if err := json.Unmarshal(quoted, &key); err != nil {
		return "", err
	}
	return key, nil
}

// encodeObject builds a JSON object from members, keeping their order.
func encodeObject(members []member) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		_ = enc.Encode(m.key)   //nolint:errchkjson // a string always encodes
		b.Truncate(b.Len() - 1) // Encode appends a newline
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.Bytes()
}
