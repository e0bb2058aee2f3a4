package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HookConfig bounds the pre/post-process webhooks stages may call. Hook
// URLs, methods and headers are written by users: see hookdial.go for what
// the client refuses.
type HookConfig struct {
	// Timeout bounds one webhook call, connection included: a budget of its
	// own, shorter than the model's (HOOK_TIMEOUT). Default 10s.
	Timeout time.Duration
	// MaxResponseBytes caps the response body. Default 1 MiB.
	MaxResponseBytes int64
	// AllowedHosts, when not empty, is the list of host names (or
	// host:port) webhooks may be sent to, compared case-insensitively; a
	// host:port entry allows that port for that host alone. Any other URL
	// fails the stage. A listed host must still resolve to public
	// addresses: the list narrows, it never opens the inside.
	AllowedHosts []string
	// AllowedPorts are the ports hooks may use (HOOK_ALLOWED_PORTS).
	// Default 80 and 443.
	AllowedPorts []int
	// AllowLoopbackForTests lets hooks reach 127.0.0.0/8 and [::1] on any
	// port (HOOK_ALLOW_LOOPBACK_FOR_TESTS). For tests whose hook target is
	// an httptest server; never set it in production.
	AllowLoopbackForTests bool
	// Resolver resolves hook host names. Default net.DefaultResolver.
	// Whatever it answers, the address is checked again at connect time.
	Resolver *net.Resolver
	// Logger receives failure details at debug level. Default: the runner's.
	Logger *slog.Logger
}

// stageSettings is the part of a stage config the runner needs.
type stageSettings struct {
	PreProcess  hookSpec `json:"pre_process"`
	PostProcess hookSpec `json:"post_process"`
}

// hookSpec is stage_config.pre_process / post_process as the Designer writes it.
type hookSpec struct {
	Enabled         *bool             `json:"enabled"`
	Type            string            `json:"type"` // webhook (default) | merge_with_input
	URL             string            `json:"webhook_url"`
	Method          string            `json:"webhook_method"`
	Headers         map[string]string `json:"webhook_headers"`
	OnFailure       string            `json:"on_failure"`      // abort | continue (default)
	OutputHandling  string            `json:"output_handling"` // merge (default) | replace | nested
	NestedFieldName string            `json:"nested_field_name"`
	InputSource     string            `json:"input_source"` // output_only (default) | input_and_output
	MergeKey        string            `json:"merge_key"`
	MergeArrayPath  string            `json:"merge_array_path"`
	InputArrayPath  string            `json:"input_array_path"`
}

func (h hookSpec) enabled() bool {
	if h.Enabled != nil {
		return *h.Enabled
	}
	return h.URL != "" || h.Type == "merge_with_input"
}

// stageConfig reads pre/post-process settings from the template's
// stage_config, falling back to the task's launcher snapshot.
func stageConfig(raw json.RawMessage, extra taskExtra) stageSettings {
	return withTaskHooks(decodeStageSettings(raw), extra)
}

// decodeStageSettings reads pre/post-process settings from a template's
// stage_config.
func decodeStageSettings(raw json.RawMessage) stageSettings {
	var s stageSettings
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &s) // unknown shapes leave the hooks off
	}
	return s
}

// withTaskHooks falls back to the task's launcher snapshot for the hooks s
// does not enable. It decodes into copies of s's hooks (their headers and
// flags are shared otherwise), so s may be a template's settings decoded
// once for the tasks of a claim (templateStage).
func withTaskHooks(s stageSettings, extra taskExtra) stageSettings {
	if !s.PreProcess.enabled() && !s.PostProcess.enabled() && len(extra.CurrentStageConfig) > 0 {
		s.PreProcess, s.PostProcess = s.PreProcess.clone(), s.PostProcess.clone()
		_ = json.Unmarshal(extra.CurrentStageConfig, &s)
	}
	if !s.PreProcess.enabled() && len(extra.PreProcess) > 0 {
		s.PreProcess = s.PreProcess.clone()
		_ = json.Unmarshal(extra.PreProcess, &s.PreProcess)
	}
	if !s.PostProcess.enabled() && len(extra.PostProcess) > 0 {
		s.PostProcess = s.PostProcess.clone()
		_ = json.Unmarshal(extra.PostProcess, &s.PostProcess)
	}
	return s
}

// clone is h with its own headers and flag: decoding into it leaves h as it
// was (encoding/json writes into an existing map and through an existing
// pointer).
func (h hookSpec) clone() hookSpec {
	if h.Enabled != nil {
		enabled := *h.Enabled
		h.Enabled = &enabled
	}
	h.Headers = maps.Clone(h.Headers)
	return h
}

type hookClient struct {
	cfg   HookConfig
	guard *hookGuard
	http  *http.Client
	log   *slog.Logger
}

func newHookClient(cfg *HookConfig, logger *slog.Logger) *hookClient {
	c := *cfg
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.MaxResponseBytes = cmp.Or(c.MaxResponseBytes, 1<<20)
	log := cmp.Or(c.Logger, logger)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := newHookGuard(&c)
	if err != nil { // config.Validate refuses this at start; a config built in code fails every hook
		log.Error("pipeline: hook settings are invalid; every hook call fails", slog.String("error", err.Error()))
		g, _ = newHookGuard(&HookConfig{})
		g.broken = err
	}
	if c.AllowLoopbackForTests {
		log.Warn("pipeline: HOOK_ALLOW_LOOPBACK_FOR_TESTS is set: stage hooks may reach loopback (127.0.0.0/8, [::1]) on any port; for tests only")
	}
	return &hookClient{cfg: c, guard: g, http: newHookHTTPClient(g, c.Resolver, c.Timeout), log: log}
}

// preProcess sends the task input to the stage's pre-process webhook and
// combines the answer with the input (merge, replace or nested). With
// on_failure "continue" (the default) a failed call keeps the input and
// marks it with _pre_process_failed / _pre_process_error.
func (h *hookClient) preProcess(ctx context.Context, spec hookSpec, input json.RawMessage) (json.RawMessage, error) {
	resp, err := h.call(ctx, spec, input)
	if err != nil {
		if ctx.Err() != nil || spec.OnFailure == "abort" {
			return nil, fmt.Errorf("pre-process webhook failed: %w", err)
		}
		obj := objectOf(input)
		obj["_pre_process_failed"] = json.RawMessage("true")
		msg, _ := json.Marshal(err.Error()) //nolint:errchkjson // a string always encodes
		obj["_pre_process_error"] = msg
		return json.Marshal(obj)
	}
	switch spec.OutputHandling {
	case "replace":
		return resp, nil
	case "nested":
		obj := objectOf(input)
		obj[cmp.Or(spec.NestedFieldName, "pre_output")] = resp
		return json.Marshal(obj)
	default: // merge: shallow merge of the response object into the input
		obj := objectOf(input)
		var add map[string]json.RawMessage
		if err := json.Unmarshal(resp, &add); err != nil {
			if spec.OnFailure == "abort" {
				return nil, fmt.Errorf("pre-process webhook answered %s, which cannot be merged into the input (not a JSON object)", snippet(resp))
			}
			obj["_pre_process_failed"] = json.RawMessage("true")
			return json.Marshal(obj)
		}
		maps.Copy(obj, add)
		return json.Marshal(obj)
	}
}

// postProcess runs the stage's post-process step on the validated output:
// merge_with_input replaces the input array's items whose merge_key matches
// a corrected item of the output; a webhook receives the output (or
// {input, output}) and, when it answers with JSON, that answer replaces the
// output. With on_failure "continue" (default) a failed webhook keeps the
// output.
func (h *hookClient) postProcess(ctx context.Context, spec hookSpec, input, output json.RawMessage) (json.RawMessage, error) {
	if spec.Type == "merge_with_input" {
		return mergeWithInput(spec, input, output)
	}
	body := output
	if spec.InputSource == "input_and_output" {
		var err error
		if body, err = json.Marshal(map[string]json.RawMessage{"input": input, "output": output}); err != nil {
			return nil, fmt.Errorf("error encoding the post-process body: %w", err)
		}
	}
	resp, err := h.call(ctx, spec, body)
	if err != nil {
		if ctx.Err() != nil || spec.OnFailure == "abort" {
			return nil, fmt.Errorf("post-process webhook failed: %w", err)
		}
		return output, nil
	}
	if spec.OutputHandling == "replace" && json.Valid(resp) && len(bytes.TrimSpace(resp)) > 0 {
		return resp, nil
	}
	return output, nil
}

func (h *hookClient) call(ctx context.Context, spec hookSpec, body json.RawMessage) (json.RawMessage, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, errors.New("webhook_url is not an http(s) URL (without credentials)")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if h.guard.broken != nil {
		return nil, errors.New("webhooks are misconfigured on this service (HOOK_ALLOWED_HOSTS/HOOK_ALLOWED_PORTS)")
	}
	if err := h.guard.checkURL(u.Hostname(), port); err != nil {
		h.log.DebugContext(ctx, "pipeline: webhook refused before dialling", slog.String("host", u.Host), slog.String("error", err.Error()))
		return nil, err
	}
	method, err := hookMethod(spec.Method)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, h.cfg.Timeout, fmt.Errorf("webhook call timed out after %s", h.cfg.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("webhook request could not be built")
	}
	if dropped := setHookHeaders(req, spec.Headers); len(dropped) > 0 {
		h.log.DebugContext(ctx, "pipeline: webhook headers dropped", slog.String("host", u.Host), slog.Any("headers", dropped))
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "orchable")
	resp, err := h.http.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(cause, context.DeadlineExceeded) {
				logUnreachable(ctx, h.log, u.Host, err)
			}
			return nil, cause
		}
		logUnreachable(ctx, h.log, u.Host, err)
		return nil, errHookUnreachable
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.MaxResponseBytes+1))
	if err != nil {
		logUnreachable(ctx, h.log, u.Host, err)
		return nil, errors.New("error reading the webhook response")
	}
	if int64(len(data)) > h.cfg.MaxResponseBytes {
		return nil, fmt.Errorf("webhook response exceeds %d bytes", h.cfg.MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("webhook answered HTTP %d (redirects are not followed)", resp.StatusCode)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return json.RawMessage("{}"), nil
	}
	if !json.Valid(data) {
		return nil, errors.New("webhook response is not JSON")
	}
	return data, nil
}

// mergeWithInput implements post_process.type = merge_with_input: the full
// array at input_array_path in the input, with every item whose merge_key
// matches an item of the output array at merge_array_path replaced by that
// corrected item, written back into the output at merge_array_path, plus
// batch_info{total_items, corrected_items, unchanged_items}.
func mergeWithInput(spec hookSpec, input, output json.RawMessage) (json.RawMessage, error) {
	key := cmp.Or(spec.MergeKey, "code")
	inPath := cmp.Or(spec.InputArrayPath, "output_data")
	outPath := cmp.Or(spec.MergeArrayPath, "output_data")
	var in, out any
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, fmt.Errorf("merge_with_input: input is not JSON: %w", err)
	}
	if err := json.Unmarshal(output, &out); err != nil {
		return nil, fmt.Errorf("merge_with_input: output is not JSON: %w", err)
	}
	base, ok := walk(in, inPath).([]any)
	if !ok {
		return nil, fmt.Errorf("merge_with_input: input_array_path %q is not an array in the input", inPath)
	}
	corrected, ok := walk(out, outPath).([]any)
	if !ok {
		return nil, fmt.Errorf("merge_with_input: merge_array_path %q is not an array in the output", outPath)
	}
	byKey := map[string]any{}
	for _, item := range corrected {
		if m, ok := item.(map[string]any); ok {
			if k, ok := m[key]; ok {
				byKey[fmt.Sprint(k)] = item
			}
		}
	}
	merged := make([]any, 0, len(base))
	changed := 0
	for _, item := range base {
		if m, ok := item.(map[string]any); ok {
			if k, ok := m[key]; ok {
				if c, ok := byKey[fmt.Sprint(k)]; ok {
					merged = append(merged, c)
					changed++
					continue
				}
			}
		}
		merged = append(merged, item)
	}
	root, ok := out.(map[string]any)
	if !ok {
		root = map[string]any{}
	}
	setPath(root, outPath, merged)
	root["batch_info"] = map[string]any{"total_items": len(base), "corrected_items": changed, "unchanged_items": len(base) - changed}
	return json.Marshal(root)
}

func walk(v any, path string) any {
	path = strings.TrimPrefix(path, "result.")
	if path == "" || path == "." || path == "result" {
		return v
	}
	for seg := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[seg]
	}
	return v
}

func setPath(root map[string]any, path string, v any) {
	path = strings.TrimPrefix(path, "result.")
	segs := strings.Split(path, ".")
	cur := root
	for _, s := range segs[:len(segs)-1] {
		next, ok := cur[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[s] = next
		}
		cur = next
	}
	cur[segs[len(segs)-1]] = v
}

func objectOf(raw json.RawMessage) map[string]json.RawMessage {
	obj := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		obj = map[string]json.RawMessage{}
		if len(bytes.TrimSpace(raw)) > 0 && string(bytes.TrimSpace(raw)) != "null" {
			obj["input"] = raw
		}
	}
	return obj
}

func snippet(b []byte) string {
	s := string(b)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
