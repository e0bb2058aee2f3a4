// Package console serves the operator console: static pages (HTML, CSS and
// JavaScript modules, embedded, no build step, no CDN) under /console that
// sign the user in against the project's Supabase Auth and then call the
// user API (/api/v1) with the user's JWT, so every read and action is the
// signed-in user's, under RLS. Nothing is rendered on the server: the
// service only hands out the files and the public settings the page needs
// (the Supabase URL and the publishable/anon key). The console never sees
// the service credential.
//
// `orchable dev` adds a dev sign-in (DevSession): a token for the demo user
// without a password. `orchable serve` never registers it.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed static
var staticFS embed.FS

// Path is where the console is served.
const Path = "/console"

// Session is a signed-in session handed out by DevSession.
type Session struct {
	AccessToken string    `json:"access_token"`
	ExpiresAt   time.Time `json:"expires_at"`
	UserID      string    `json:"user_id"`
	Email       string    `json:"email"`
}

// Config is what the page is told and what the console serves.
type Config struct {
	// SupabaseURL is the project URL; the page signs in against
	// SupabaseURL/auth/v1 (password and refresh-token grants).
	SupabaseURL string
	// AnonKey is the project's publishable (anon) key, sent as the apikey
	// header to Auth. It is public by design.
	AnonKey string
	// DevSessionFunc, when set, serves POST /console/dev/session: a token
	// for the demo user without a password. Only `orchable dev` sets it.
	DevSessionFunc func() (Session, error)
}

// settings is GET /console/config.json.
type settings struct {
	SupabaseURL string `json:"supabase_url"`
	AnonKey     string `json:"anon_key"`
	DevSignIn   bool   `json:"dev_sign_in"`
}

// Console is the mounted console.
type Console struct {
	cfg   Config
	group *echo.Group
}

// EnableDevSignIn adds POST /console/dev/session, answering fn's session
// (the demo user's token, without a password). Only `orchable dev` calls it,
// before the server starts.
func (c *Console) EnableDevSignIn(fn func() (Session, error)) {
	c.cfg.DevSessionFunc = fn
	c.group.POST("/dev/session", func(ec echo.Context) error {
		s, err := fn()
		if err != nil {
			return err
		}
		return ec.JSON(http.StatusOK, s)
	})
}

// Register mounts the console on e.
func Register(e *echo.Echo, cfg *Config) *Console {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic("console: " + err.Error()) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Path+"/", http.FileServerFS(sub))
	csp := contentSecurityPolicy(cfg.SupabaseURL)
	headers := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Cache-Control", "no-cache")
			return next(c)
		}
	}
	g := e.Group(Path, headers)
	con := &Console{cfg: Config{SupabaseURL: cfg.SupabaseURL, AnonKey: cfg.AnonKey}, group: g}
	g.GET("", func(c echo.Context) error { return c.Redirect(http.StatusFound, Path+"/") })
	g.GET("/config.json", func(c echo.Context) error {
		return c.JSON(http.StatusOK, settings{
			SupabaseURL: strings.TrimRight(con.cfg.SupabaseURL, "/"), AnonKey: con.cfg.AnonKey, DevSignIn: con.cfg.DevSessionFunc != nil,
		})
	})
	g.GET("/*", echo.WrapHandler(files))
	if cfg.DevSessionFunc != nil {
		con.EnableDevSignIn(cfg.DevSessionFunc)
	}
	return con
}

// contentSecurityPolicy allows the page's own files and calls to the
// service and to Supabase Auth, nothing else.
func contentSecurityPolicy(supabaseURL string) string {
	connect := "'self'"
	if u, err := url.Parse(supabaseURL); err == nil && u.Scheme != "" && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
