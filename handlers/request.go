package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/orchable/orchable/apierror"
	"github.com/orchable/orchable/rls"
	"github.com/orchable/orchable/supabase"
)

// caller returns the identity of the signed-in user (set by UserAuth): the
// bearer token and its claims, forwarded to the database so RLS applies.
func caller(c echo.Context) (supabase.Identity, uuid.UUID, error) {
	ctx := c.Request().Context()
	claims, ok := rls.ClaimsFromContext(ctx)
	token, hasToken := rls.TokenFromContext(ctx)
	if !ok || !hasToken || claims == nil {
		return supabase.Identity{}, uuid.Nil, apierror.New(http.StatusUnauthorized, CodeUnauthorized, "sign in first", nil)
	}
	raw, err := json.Marshal(claims)
	if err != nil {
		return supabase.Identity{}, uuid.Nil, apierror.New(http.StatusInternalServerError, CodeInternal, genericMessage, err)
	}
	return supabase.Identity{Token: token, Claims: raw}, claims.UserID, nil
}

// pathID parses the :id path parameter as a canonical UUID.
func pathID(c echo.Context) (uuid.UUID, error) {
	s := c.Param("id")
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, badRequest(CodeInvalidID, "id must be a UUID", err)
	}
	return id, nil
}

// bindJSON decodes the request body into dst, strictly: unknown fields and
// trailing data are rejected. An empty body is allowed only when optional.
// A body over the limit gives the body-limit middleware's 413.
func bindJSON(c echo.Context, dst any, optional bool) error {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		if he, ok := errors.AsType[*echo.HTTPError](err); ok {
			return he
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return apierror.New(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "the request body is too large", err)
		}
		return badRequest(CodeMalformedJSON, "the request body could not be read", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return badRequest(CodeMalformedJSON, "a JSON object body is required", nil)
	}
	if !isObject(raw) {
		return badRequest(CodeMalformedJSON, "the request body must be a JSON object", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badRequest(CodeMalformedJSON, "invalid JSON body: "+err.Error(), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(CodeMalformedJSON, "invalid JSON body: data after the object", nil)
	}
	return nil
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}
