package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/rls"
)

// CodeAnonymousNotAllowed answers an anonymous sign-in that tries to start
// work where Deps.AllowAnonymousLaunch is off.
const CodeAnonymousNotAllowed = "anonymous_not_allowed"

// denyAnonymous returns middleware, placed after UserAuth, that refuses
// anonymous sign-ins (role authenticated with is_anonymous true) with a 403
// unless allow is set.
func denyAnonymous(allow bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !allow {
				if claims, ok := rls.ClaimsFromContext(c.Request().Context()); ok && claims.IsAnonymous {
					return apierror.New(http.StatusForbidden, CodeAnonymousNotAllowed,
						"anonymous sign-ins cannot start work on this service: sign in with an account", nil)
				}
			}
			return next(c)
		}
	}
}
