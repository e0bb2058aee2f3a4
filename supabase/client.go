package supabase

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config configures a Client.
type Config struct {
	// URL is the project URL (SUPABASE_URL), e.g. https://<ref>.supabase.co.
	// Required. Requests go to URL + "/rest/v1".
	URL string
	// APIKey is the key sent as the apikey header on every request
	// (required by the Supabase gateway): the publishable key
	// (sb_publishable_…) or legacy anon JWT for user calls, the secret key
	// (sb_secret_…) or legacy service_role JWT for the service client. A new
	// key (sb_…) is never sent as a bearer: the gateway gives a request that
	// carries no JWT the key's role. A legacy key identity keeps its bearer.
	APIKey string
	// HTTPClient is shared by all calls. Default: a client with a tuned
	// transport (keep-alives, 256 idle connections per host) and no overall
	// timeout (Timeout bounds each call).
	HTTPClient *http.Client
	// Timeout bounds one call, retries included. Default 30s.
	Timeout time.Duration
	// MaxResponseBytes caps a response body. Default 32 MiB. A larger
	// successful response fails with ErrResponseTooLarge (never retried); a
	// larger error response keeps its status.
	MaxResponseBytes int64
	// Retry configures retries of idempotent calls.
	Retry RetryConfig
}

// Client is the PostgREST transport (Supabase's Data API). It is built once
// and shared; the caller's identity travels with each call.
type Client struct {
	base string // <URL>/rest/v1
	key  string
	http *http.Client
	cfg  Config
}

var _ DB = (*Client)(nil)

// New returns a Client for cfg.
func New(cfg *Config) (*Client, error) {
	if cfg == nil {
		return nil, errors.New("supabase: nil Config")
	}
	c := *cfg
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("supabase: Config.URL %q is not an http(s) URL", c.URL)
	}
	if c.APIKey == "" {
		return nil, errors.New("supabase: Config.APIKey is required")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		}}
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 32 << 20
	}
	c.Retry = c.Retry.withDefaults()
	return &Client{base: strings.TrimRight(c.URL, "/") + "/rest/v1", key: c.APIKey, http: c.HTTPClient, cfg: c}, nil
}

// isNewAPIKey reports whether key is a new-format API key
// (sb_publishable_…, sb_secret_…), which is not a JWT.
func isNewAPIKey(key string) bool { return strings.HasPrefix(key, "sb_") }

// Accept values (PostgREST references/api/resource_representation.rst).
const (
	mimeJSON   = "application/json"
	mimeObject = "application/vnd.pgrst.object+json"
)

// RPC implements DB: POST /rest/v1/rpc/<fn> with args as the JSON body
// (references/api/functions.rst). It is retried only when ctx is marked
// with Idempotent.
func (c *Client) RPC(ctx context.Context, id Identity, fn string, args any, out any) error {
	if !validIdent(fn) {
		return fmt.Errorf("rpc %s: %w", fn, badRequest("PGRST100", fmt.Sprintf("invalid function name %q", fn)))
	}
	body, _, err := argsObject(args)
	if err != nil {
		return fmt.Errorf("rpc %s: %w", fn, err)
	}
	res, err := c.do(ctx, id, IsIdempotent(ctx), http.MethodPost, c.base+"/rpc/"+fn, mimeJSON, body)
	if err != nil {
		return fmt.Errorf("rpc %s: %w", fn, err)
	}
	return decodeInto(res, out, "rpc "+fn)
}

// Select implements DB: GET /rest/v1/<table>?<query>
// (references/api/tables_views.rst).
func (c *Client) Select(ctx context.Context, id Identity, table string, q Query, out any) error {
	if err := q.validate(table); err != nil {
		return fmt.Errorf("select %s: %w", table, err)
	}
	accept := mimeJSON
	if q.Single {
		accept = mimeObject
	}
	res, err := c.do(ctx, id, true, http.MethodGet, c.base+"/"+table+"?"+q.encode(), accept, nil)
	if err != nil {
		return fmt.Errorf("select %s: %w", table, err)
	}
	return decodeInto(res, out, "select "+table)
}

// do sends one request (retrying idempotent ones) and returns the body of a
// 2xx response or an *Error.
func (c *Client) do(ctx context.Context, id Identity, idempotent bool, method, u, accept string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var res []byte
	err := c.cfg.Retry.do(ctx, idempotent, func() error {
		var err error
		res, err = c.once(ctx, id, method, u, accept, body)
		return err
	})
	return res, err
}

func (c *Client) once(ctx context.Context, id Identity, method, u, accept string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("supabase: building request: %w", err)
	}
	req.Header.Set("apikey", c.key)
	switch {
	case id.Token == "":
	case isNewAPIKey(id.Token):
		// sb_publishable_…/sb_secret_… are not JWTs: the gateway takes the
		// role from the apikey header alone. Such a token is only ever this
		// client's own key; anything else would act with the wrong key.
		if id.Token != c.key {
			return nil, errors.New("supabase: an sb_ API key as the identity's token must be the client's APIKey")
		}
	default:
		req.Header.Set("Authorization", "Bearer "+id.Token)
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("supabase: %w (%w)", context.Cause(ctx), err)
		}
		return nil, unavailable("request", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("supabase: %w (%w)", context.Cause(ctx), err)
		}
		return nil, unavailable("reading response", err)
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		if !ok {
			// An oversized error page (a gateway's HTML) still carries its
			// status; only a snippet of it is kept anyway.
			return nil, decodeError(resp.StatusCode, resp.Header.Get("Content-Type"), data[:c.cfg.MaxResponseBytes])
		}
		return nil, fmt.Errorf("%w: status %d, more than %d bytes (Config.MaxResponseBytes)",
			ErrResponseTooLarge, resp.StatusCode, c.cfg.MaxResponseBytes)
	}
	if ok {
		return data, nil
	}
	return nil, decodeError(resp.StatusCode, resp.Header.Get("Content-Type"), data)
}

// decodeError turns an error response into *Error: PostgREST's
// {code, message, details, hint} (references/errors.rst), or, for a gateway
// page (HTML or plain text 502/503/504), the status and a snippet.
func decodeError(status int, contentType string, data []byte) *Error {
	e := &Error{Status: status, rows: -1}
	var body struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
		Hint    json.RawMessage `json:"hint"`
		Error   string          `json:"error"` // some gateway errors
	}
	if strings.Contains(contentType, "json") && json.Unmarshal(data, &body) == nil {
		e.Code = jsonText(body.Code)
		e.Message = body.Message
		if e.Message == "" {
			e.Message = body.Error
		}
		e.Details = jsonText(body.Details)
		e.Hint = jsonText(body.Hint)
		if e.Code == codeNotSingular {
			e.rows = rowsFromDetails(e.Details)
		}
	}
	if e.Message == "" && e.Code == "" {
		snippet := strings.TrimSpace(string(data))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "…"
		}
		e.Message = http.StatusText(status)
		if snippet != "" {
			e.Details = snippet
		}
	}
	return e
}

// jsonText returns a JSON string's value, a number's text, "" for null, or
// other JSON as written.
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// encode renders q as PostgREST query parameters
// (references/api/url_grammar.rst).
func (q *Query) encode() string {
	v := url.Values{}
	if len(q.Columns) > 0 {
		v.Set("select", strings.Join(q.Columns, ","))
	}
	for _, f := range q.Filters {
		v.Add(f.Column, filterValue(f))
	}
	if len(q.Order) > 0 {
		parts := make([]string, len(q.Order))
		for i, o := range q.Order {
			p := o.Column + ".asc"
			if o.Desc {
				p = o.Column + ".desc"
			}
			if o.Nulls != "" {
				p += "." + string(o.Nulls)
			}
			parts[i] = p
		}
		v.Set("order", strings.Join(parts, ","))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset > 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	return v.Encode()
}

// filterValue renders "op.value". A simple operator takes the rest of the
// parameter verbatim; list items of in.(…) are double-quoted when they
// contain a reserved character (, . : ( ) " \ or space), with " and \
// backslash-escaped (references/api/url_grammar.rst, "Reserved characters").
func filterValue(f Filter) string {
	switch f.Op {
	case OpIn:
		vs, _ := f.Value.([]any)
		parts := make([]string, len(vs))
		for i, x := range vs {
			parts[i] = quoteListItem(formatValue(x))
		}
		return "in.(" + strings.Join(parts, ",") + ")"
	case OpIs:
		kw, _ := isKeyword(f.Value)
		if kw == "not_null" {
			// is.not_null exists only from PostgREST v13; this works on all.
			return "not.is.null"
		}
		return "is." + kw
	default:
		return string(f.Op) + "." + formatValue(f.Value)
	}
}

func quoteListItem(s string) string {
	if s != "" && !strings.ContainsAny(s, ",.:()\"\\ ") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
