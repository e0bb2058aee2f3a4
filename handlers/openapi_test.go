package handlers_test

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml and Register in step: the
// (method, path) pairs in the document are exactly the registered routes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()

	raw, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3.1"), "openapi: %s", doc.OpenAPI)

	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	var documented []string
	for path, item := range doc.Paths {
		for key, op := range item {
			if !slices.Contains(methods, key) {
				continue
			}
			documented = append(documented, strings.ToUpper(key)+" "+path)
			require.Contains(t, op, "responses", "%s %s has no responses", key, path)
			require.Contains(t, op, "operationId", "%s %s has no operationId", key, path)
		}
	}

	b := setup(t)
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	var registered []string
	for _, r := range b.e.Routes() {
		if !slices.Contains(methods, strings.ToLower(r.Method)) {
			continue // Echo's internal not-found routes
		}
		registered = append(registered, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(documented)
	slices.Sort(registered)
	require.Equal(t, registered, documented)
	require.Contains(t, registered, http.MethodPost+" /webhooks/supabase")
}

// TestOpenAPIRefsResolve checks that every local $ref points at something.
func TestOpenAPIRefsResolve(t *testing.T) {
	t.Parallel()

	raw, err := os.ReadFile("../docs/openapi.yaml")
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &doc))

	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				require.True(t, strings.HasPrefix(ref, "#/"), "non-local $ref %s", ref)
				var cur any = doc
				for part := range strings.SplitSeq(strings.TrimPrefix(ref, "#/"), "/") {
					m, isMap := cur.(map[string]any)
					require.True(t, isMap, "$ref %s does not resolve", ref)
					cur, ok = m[part]
					require.True(t, ok, "$ref %s does not resolve", ref)
				}
			}
			for _, child := range x {
				walk(child)
			}
		case []any:
			for _, child := range x {
				walk(child)
			}
		}
	}
	walk(doc)
}
