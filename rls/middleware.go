package rls

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
)

// Middleware returns Echo middleware that requires a valid bearer token. On success it stores the
// claims and the token in the request context (read them with [ClaimsFromContext] and
// [TokenFromContext]); on failure it returns a 401 *apierror.Error for the HTTPErrorHandler to render,
// and does not call the next handler. It does not log: the error handler is the one place that
// logs (and it must not log the token, which the error never contains).
func (v *Verifier) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			token, err := ParseBearer(req.Header.Get(echo.HeaderAuthorization))
			if err != nil {
				return err
			}
			claims, err := v.Verify(req.Context(), token)
			if err != nil {
				return err
			}
			c.SetRequest(req.WithContext(ContextWithClaims(req.Context(), claims, token)))
			return next(c)
		}
	}
}

// RequireRole returns Echo middleware, placed after [Verifier.Middleware], that lets through only
// requests whose claims carry one of roles: no claims gives a 401 *apierror.Error, another role a 403.
func RequireRole(roles ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			claims, ok := ClaimsFromContext(c.Request().Context())
			if !ok {
				return tokenError(ErrMissingToken, nil)
			}
			if !slices.Contains(roles, claims.Role) {
				return apierror.New(http.StatusForbidden, CodeInsufficientRole, ErrRoleNotAllowed.Error(),
					fmt.Errorf("%w: role %q", ErrRoleNotAllowed, claims.Role))
			}
			return next(c)
		}
	}
}
