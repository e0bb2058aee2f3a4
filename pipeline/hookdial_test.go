package pipeline

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// The address rules, on literal addresses: everything inside is refused,
// public unicast passes; the test opt-in opens exactly 127/8 and ::1.
func TestHookGuardAddresses(t *testing.T) {
	t.Parallel()
	prod, err := newHookGuard(&HookConfig{})
	require.NoError(t, err)
	tests, err := newHookGuard(&HookConfig{AllowLoopbackForTests: true})
	require.NoError(t, err)
	refused := []string{
		"127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "255.255.255.255", "192.0.0.1", "198.18.0.1",
		"::1", "::", "fe80::1", "fc00::1", "fdaa::3", "fdaa:0:1::2", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"::ffff:169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::", "2001::1", "2001:db8::1",
	}
	for _, s := range refused {
		ip := netip.MustParseAddr(s)
		require.Error(t, prod.checkIP(ip), "%s must be refused", s)
		require.Error(t, prod.control("tcp6", netip.AddrPortFrom(ip, 443).String(), nil), "%s:443 must be refused at dial", s)
		if !ip.IsLoopback() {
			require.Error(t, tests.checkIP(ip), "%s must be refused even with the test opt-in", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"} {
		ip := netip.MustParseAddr(s)
		require.NoError(t, prod.checkIP(ip), s)
		require.NoError(t, prod.control("tcp4", netip.AddrPortFrom(ip, 443).String(), nil), s)
		require.Error(t, prod.control("tcp4", netip.AddrPortFrom(ip, 8080).String(), nil), "%s:8080: port not allowed", s)
	}
	require.NoError(t, tests.control("tcp4", "127.0.0.1:45678", nil))
	require.NoError(t, tests.control("tcp6", "[::1]:45678", nil))
	require.Error(t, tests.control("tcp6", "[::ffff:127.0.0.1]:45678", nil), "mapped loopback stays refused")
	require.Error(t, prod.control("udp4", "8.8.8.8:443", nil))
}

// Names and ports are refused before any lookup; HOOK_ALLOWED_HOSTS is
// case-insensitive and port-aware, and never opens an inside address.
func TestHookGuardURLs(t *testing.T) {
	t.Parallel()
	prod, err := newHookGuard(&HookConfig{})
	require.NoError(t, err)
	for _, hp := range [][2]string{
		{"localhost", "80"},
		{"LOCALHOST", "80"},
		{"localhost.", "443"},
		{"foo.localhost", "80"},
		{"metadata.google.internal", "80"},
		{"my-app.internal", "443"},
		{"top1.nearest.of.my-app.internal", "80"},
		{"my-app.flycast", "80"},
		{"printer.local", "80"},
		{"metadata", "80"},
		{"10.1.2.3", "80"},
		{"127.0.0.1", "80"},
		{"::1", "443"},
		{"::ffff:127.0.0.1", "80"},
		{"0.0.0.0", "80"},
		{"example.com", "22"},
		{"example.com", "6379"},
		{"example.com", "0"},
	} {
		require.Error(t, prod.checkURL(hp[0], hp[1]), "%s:%s", hp[0], hp[1])
	}
	require.NoError(t, prod.checkURL("hooks.example.com", "443"))
	require.NoError(t, prod.checkURL("8.8.8.8", "80"))

	allow, err := newHookGuard(&HookConfig{AllowedHosts: []string{"Hooks.Example.COM", "api.example.org:8443", "LOCALHOST"}})
	require.NoError(t, err)
	require.NoError(t, allow.checkURL("hooks.example.com", "443"))
	require.NoError(t, allow.checkURL("HOOKS.example.com", "80"))
	require.Error(t, allow.checkURL("hooks.example.com", "8443"), "a host without a port gets the allowed ports only")
	require.NoError(t, allow.checkURL("api.example.org", "8443"), "a host:port entry allows that port")
	require.Error(t, allow.checkURL("api.example.org", "443"), "a host:port entry allows that port alone")
	require.Error(t, allow.checkURL("other.example.com", "443"))
	require.Error(t, allow.checkURL("localhost", "80"), "listing localhost does not open loopback")
	require.NoError(t, allow.control("tcp4", "93.184.215.14:8443", nil), "the listed port passes at dial")
	require.Error(t, allow.control("tcp4", "127.0.0.1:8443", nil), "…but never to an inside address")

	ports, err := newHookGuard(&HookConfig{AllowedPorts: []int{8443}})
	require.NoError(t, err)
	require.NoError(t, ports.checkURL("example.com", "8443"))
	require.Error(t, ports.checkURL("example.com", "443"))
	_, err = newHookGuard(&HookConfig{AllowedHosts: []string{"x.example.com:99999"}})
	require.Error(t, err)
	require.Error(t, (&HookConfig{AllowedPorts: []int{0}}).Validate())
}

// Methods outside GET/POST/PUT/PATCH are refused; Host, hop-by-hop and
// metadata headers never leave; redirects are not followed; a proxy in the
// environment is not used.
func TestHookRequestShape(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	var got atomic.Pointer[http.Header]
	var gotHost atomic.Value
	var redirected atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		redirected.Add(1)
		_, _ = w.Write([]byte(`{"secret": "from inside"}`))
	}))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		got.Store(&h)
		gotHost.Store(r.Host)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, target.URL+"/", http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(`{"ok": true}`))
	}))
	t.Cleanup(srv.Close)
	h := newHookClient(&HookConfig{AllowLoopbackForTests: true}, nil)
	ctx := context.Background()

	for _, m := range []string{"DELETE", "OPTIONS", "TRACE", "CONNECT", "HEAD", "PROPFIND", "get\r\nX: y"} {
		_, err := h.call(ctx, hookSpec{URL: srv.URL, Method: m}, json.RawMessage(`{}`))
		require.ErrorContains(t, err, "is not allowed", m)
	}
	require.Nil(t, got.Load(), "no refused method reached the server")
	for _, m := range []string{"", "get", "POST", "put", "Patch"} {
		_, err := h.call(ctx, hookSpec{URL: srv.URL, Method: m}, json.RawMessage(`{}`))
		require.NoError(t, err, m)
	}

	_, err := h.call(ctx, hookSpec{URL: srv.URL, Headers: map[string]string{
		"Host": "metadata.google.internal", "Metadata-Flavor": "Google", "metadata-flavor": "Google", "X-Google-Metadata-Request": "True",
		"Metadata": "true", "X-aws-ec2-metadata-token": "t", "Connection": "close", "Proxy-Authorization": "Basic eA==",
		"Transfer-Encoding": "chunked", "Upgrade": "h2c", "X-Forwarded-For": "127.0.0.1", "Bad Name": "x", "X-Inject": "a\r\nHost: evil",
		"Authorization": "Bearer user-own-token", "X-Custom": "kept",
	}}, json.RawMessage(`{}`))
	require.NoError(t, err)
	hdr := *got.Load()
	for _, k := range []string{"Metadata-Flavor", "X-Google-Metadata-Request", "Metadata", "X-Aws-Ec2-Metadata-Token", "Proxy-Authorization", "Upgrade", "X-Forwarded-For", "X-Inject"} {
		require.Empty(t, hdr.Get(k), k)
	}
	require.Equal(t, strings.TrimPrefix(srv.URL, "http://"), gotHost.Load(), "Host is the URL's")
	require.Equal(t, "Bearer user-own-token", hdr.Get("Authorization"))
	require.Equal(t, "kept", hdr.Get("X-Custom"))

	_, err = h.call(ctx, hookSpec{URL: srv.URL + "/redirect"}, json.RawMessage(`{}`))
	require.ErrorContains(t, err, "HTTP 302")
	require.Zero(t, redirected.Load(), "the redirect target was never called")

	// A closed port gives the generic message, not "connection refused".
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	_, err = h.call(ctx, hookSpec{URL: "http://" + closed + "/"}, json.RawMessage(`{}`))
	require.ErrorIs(t, err, errHookUnreachable)
	require.NotContains(t, err.Error(), "refused")
	require.NotContains(t, err.Error(), closed)

	// Without the opt-in the same server is refused before it is reached.
	got.Store(nil)
	prod := newHookClient(&HookConfig{}, nil)
	_, err = prod.call(ctx, hookSpec{URL: srv.URL}, json.RawMessage(`{}`))
	require.Error(t, err)
	require.Nil(t, got.Load())
}
