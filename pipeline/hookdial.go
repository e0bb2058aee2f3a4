package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
	"golang.org/x/net/http/httpguts"
)

// The outbound hook client (SPEC §8, §14). Stage hooks are written by users,
// so every call is treated as hostile:
//
//   - the destination is checked when the connection is made, after DNS,
//     for every address tried (net.Dialer.Control): only public unicast
//     addresses pass (code.dny.dev/ssrf's rules from the IANA special-purpose
//     registries: loopback, unspecified, RFC 1918, link-local, CGNAT,
//     multicast, reserved; for IPv6 anything outside 2000::/3, so ::1,
//     fe80::/10, fc00::/7 (Fly's fdaa::/16), IPv4-mapped and NAT64
//     addresses are refused), so neither a name resolving inside nor DNS
//     rebinding reaches the network behind the service;
//   - names that denote the inside (localhost, *.internal, *.flycast, …)
//     are refused before any lookup;
//   - ports 80 and 443 only, unless configured;
//   - no proxy from the environment, no redirects followed;
//   - methods GET, POST, PUT, PATCH; Host, hop-by-hop and cloud metadata
//     headers are dropped;
//   - failures to connect give one generic message (no port scanner through
//     error_message); the detail goes to the log at debug level.

// allowedHookMethods are the methods a hook may use.
var allowedHookMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch} //nolint:gochecknoglobals // constant

// droppedHookHeaders are never sent, whatever the stage config says
// (canonical names). Hop-by-hop headers (RFC 9110 §7.6.1), headers the
// transport owns, and headers cloud metadata services require or trust.
var droppedHookHeaders = map[string]bool{ //nolint:gochecknoglobals // constant
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Proxy-Authorization": true, "Proxy-Authenticate": true, "Te": true, "Trailer": true,
	"Upgrade": true, "Expect": true,
	"Metadata-Flavor": true, "X-Google-Metadata-Request": true, "Metadata": true,
	"X-Aws-Ec2-Metadata-Token": true, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds": true, "X-Identity-Header": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Real-Ip": true,
}

// maxHookHeaders bounds the headers a stage may add; maxHookHeaderBytes
// bounds their total size.
const (
	maxHookHeaders     = 32
	maxHookHeaderBytes = 16 << 10
)

// deniedHookNames are host names that denote the inside of a network;
// deniedHookSuffixes are suffixes of such names.
var (
	deniedHookNames = []string{ //nolint:gochecknoglobals // constant
		"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata", "metadata.google.internal",
		"instance-data", "kubernetes.default", "kubernetes.default.svc",
	}
	deniedHookSuffixes = []string{".localhost", ".internal", ".flycast", ".local", ".localdomain", ".home.arpa", ".svc", ".cluster.local"} //nolint:gochecknoglobals // constant
)

// errHookUnreachable is the one message a task gets when a hook could not
// be reached: refused by the destination check, unknown name, connection
// refused or reset, TLS failure. The log has the detail at debug level.
var errHookUnreachable = errors.New("webhook call failed: the destination could not be reached or is not allowed (details in the service log)")

// errHookRefused marks a destination refused by the dial-time check.
var errHookRefused = errors.New("pipeline: hook destination refused")

// hookGuard decides where hooks may go.
type hookGuard struct {
	guardian *ssrf.Guardian
	ports    []uint16          // allowed ports for any allowed host
	hosts    map[string]string // lower-case host → "" (any allowed port) or a port
	hostsSet bool
	loopback bool  // tests only: 127.0.0.0/8 and ::1 on any port
	broken   error // invalid settings: every call fails
}

// Validate checks the allowed hosts and ports.
func (c *HookConfig) Validate() error {
	_, err := newHookGuard(c)
	return err
}

func newHookGuard(cfg *HookConfig) (*hookGuard, error) {
	g := &hookGuard{guardian: ssrf.New(ssrf.WithAnyPort()), loopback: cfg.AllowLoopbackForTests}
	ports := cfg.AllowedPorts
	if len(ports) == 0 {
		ports = []int{80, 443}
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("pipeline: hook port %d is not a TCP port", p)
		}
		g.ports = append(g.ports, uint16(p))
	}
	g.hosts = map[string]string{}
	for _, h := range cfg.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		g.hostsSet = true
		host, port, err := net.SplitHostPort(h)
		if err != nil { // no port: any allowed port
			g.hosts[strings.TrimSuffix(strings.Trim(h, "[]"), ".")] = ""
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("pipeline: allowed hook host %q has a bad port", h)
		}
		host = strings.TrimSuffix(host, ".")
		if prev, ok := g.hosts[host]; ok && prev == "" {
			continue // already allowed on every allowed port
		}
		g.hosts[host+":"+port] = port
		if _, ok := g.hosts[host]; !ok {
			g.hosts[host] = "explicit" // listed only with ports
		}
	}
	return g, nil
}

// checkURL validates the host and port of a hook URL before anything is
// resolved or dialled. It returns the error for the task.
func (g *hookGuard) checkURL(host, port string) error {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return errors.New("webhook_url has no host")
	}
	if slices.Contains(deniedHookNames, host) || slices.ContainsFunc(deniedHookSuffixes, func(s string) bool { return strings.HasSuffix(host, s) }) {
		return fmt.Errorf("webhook host %s is not allowed (internal name)", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("webhook port %q is not a TCP port", port)
	}
	explicitPort := false
	if g.hostsSet {
		mode, ok := g.hosts[host]
		_, withPort := g.hosts[host+":"+port]
		switch {
		case withPort:
			explicitPort = true
		case ok && mode == "":
		default:
			return fmt.Errorf("webhook host %s is not in HOOK_ALLOWED_HOSTS", net.JoinHostPort(host, port))
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := g.checkIP(ip.WithZone("")); err != nil {
			return fmt.Errorf("webhook address %s is not allowed (not a public address)", host)
		}
		if g.testLoopback(ip) {
			return nil // tests: any port of loopback
		}
	}
	if !explicitPort && !slices.Contains(g.ports, uint16(n)) { // range checked above
		return fmt.Errorf("webhook port %d is not allowed (allowed: %s)", n, g.portList())
	}
	return nil
}

// testLoopback reports whether the test opt-in lets ip through: 127.0.0.0/8
// and ::1, never their IPv4-mapped forms.
func (g *hookGuard) testLoopback(ip netip.Addr) bool {
	return g.loopback && !ip.Is4In6() && ip.IsLoopback()
}

func (g *hookGuard) portList() string {
	s := make([]string, len(g.ports))
	for i, p := range g.ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// checkIP applies the address rules: the test opt-in lets exactly
// 127.0.0.0/8 and ::1 through; everything else must be public unicast.
func (g *hookGuard) checkIP(ip netip.Addr) error {
	if g.testLoopback(ip) {
		return nil
	}
	if err := g.guardian.SafeAddr(ip); err != nil {
		return err
	}
	if ip.Is4In6() || ip.IsLoopback() || ip.IsUnspecified() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return fmt.Errorf("%w: %s", ssrf.ErrProhibitedIP, ip) // belt and braces over the library
	}
	return nil
}

// control is the net.Dialer.Control hook: it runs for every address a
// connection is attempted to, after DNS resolution and before connect(2).
func (g *hookGuard) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s", errHookRefused, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errHookRefused, address, err)
	}
	ip := ap.Addr().WithZone("")
	if err := g.checkIP(ip); err != nil {
		return fmt.Errorf("%w: %w", errHookRefused, err)
	}
	// The URL check already enforced the port; this repeats it at the
	// socket for ports nobody configured.
	if !g.testLoopback(ip) && !slices.Contains(g.ports, ap.Port()) && !g.portListed(ap.Port()) {
		return fmt.Errorf("%w: port %d", errHookRefused, ap.Port())
	}
	return nil
}

func (g *hookGuard) portListed(p uint16) bool {
	want := strconv.Itoa(int(p))
	for _, port := range g.hosts {
		if port == want {
			return true
		}
	}
	return false
}

// newHookHTTPClient is the client hooks are sent with: the guard on every
// connection, no proxy, no redirects, no ambient credentials.
func newHookHTTPClient(g *hookGuard, resolver *net.Resolver, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{
		Timeout:   min(timeout, 5*time.Second),
		KeepAlive: 30 * time.Second,
		Resolver:  resolver,
		Control:   g.control,
	}
	tr := &http.Transport{
		Proxy:                  nil, // never HTTP(S)_PROXY from the environment
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        30 * time.Second,
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       timeout,
	}
}

// hookMethod returns the method to use, or an error naming the allowed ones.
func hookMethod(m string) (string, error) {
	if m == "" {
		return http.MethodPost, nil
	}
	up := strings.ToUpper(strings.TrimSpace(m))
	if !slices.Contains(allowedHookMethods, up) {
		return "", fmt.Errorf("webhook_method %q is not allowed (allowed: %s)", snippet([]byte(m)), strings.Join(allowedHookMethods, ", "))
	}
	return up, nil
}

// setHookHeaders copies the stage's headers onto req, dropping the ones
// hooks may not send. It returns the names dropped, for the debug log.
func setHookHeaders(req *http.Request, headers map[string]string) []string {
	var dropped []string
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	slices.Sort(names)
	total := 0
	kept := 0
	for _, k := range names {
		v := headers[k]
		canon := http.CanonicalHeaderKey(strings.TrimSpace(k))
		switch {
		case !httpguts.ValidHeaderFieldName(canon), !httpguts.ValidHeaderFieldValue(v),
			droppedHookHeaders[canon], strings.HasPrefix(canon, "Proxy-"), strings.HasPrefix(canon, "X-Forwarded-"),
			strings.HasPrefix(canon, "Sec-"), kept >= maxHookHeaders, total+len(canon)+len(v) > maxHookHeaderBytes:
			dropped = append(dropped, snippet([]byte(k)))
			continue
		}
		total += len(canon) + len(v)
		kept++
		req.Header.Set(canon, v)
	}
	return dropped
}

// logUnreachable writes the detail of a failed connection at debug level.
func logUnreachable(ctx context.Context, log *slog.Logger, host string, err error) {
	log.DebugContext(ctx, "pipeline: webhook call failed", slog.String("host", host), slog.Bool("refused_by_guard", errors.Is(err, errHookRefused)), slog.String("error", err.Error()))
}
