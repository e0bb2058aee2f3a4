package config_test

import (
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orchable/orchable/config"
)

// Hook, fair-share and metrics settings: defaults and refusals.
func TestLoadHooksFairShareMetrics(t *testing.T) {
	t.Parallel()
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x"}
		maps.Copy(m, extra)
		return m
	}
	c, err := config.Load(env(base(nil)))
	require.NoError(t, err)
	h := c.Pipeline.Runner.Hooks
	require.Equal(t, 10*time.Second, h.Timeout)
	require.Equal(t, []int{80, 443}, h.AllowedPorts)
	require.False(t, h.AllowLoopbackForTests, "never a default")
	require.Equal(t, 1, c.Pipeline.Dispatcher.FairShareFloor)
	require.False(t, c.HTTP.MetricsToken.IsSet())
	require.Equal(t, 50, c.HTTP.MetricsStageLabels)

	c, err = config.Load(env(base(map[string]string{
		"HOOK_ALLOWED_PORTS": "443, 8443", "HOOK_ALLOWED_HOSTS": "Hooks.Example.com, api.example.org:9443",
		"HOOK_TIMEOUT": "3s", "HOOK_ALLOW_LOOPBACK_FOR_TESTS": "true", "FAIR_SHARE_FLOOR": "4",
		"METRICS_TOKEN": "0123456789abcdef0123", "METRICS_STAGE_LABELS": "0",
	})))
	require.NoError(t, err)
	require.Equal(t, []int{443, 8443}, c.Pipeline.Runner.Hooks.AllowedPorts)
	require.Equal(t, []string{"Hooks.Example.com", "api.example.org:9443"}, c.Pipeline.Runner.Hooks.AllowedHosts)
	require.True(t, c.Pipeline.Runner.Hooks.AllowLoopbackForTests)
	require.Equal(t, 4, c.Pipeline.Dispatcher.FairShareFloor)
	require.Equal(t, "0123456789abcdef0123", c.HTTP.MetricsToken.Reveal())
	require.Zero(t, c.HTTP.MetricsStageLabels)

	for name, bad := range map[string]map[string]string{
		"HOOK_ALLOWED_PORTS":   {"HOOK_ALLOWED_PORTS": "443,70000"},
		"HOOK_ALLOWED_HOSTS":   {"HOOK_ALLOWED_HOSTS": "x.example.com:0"},
		"HOOK_TIMEOUT":         {"HOOK_TIMEOUT": "0s"},
		"METRICS_TOKEN":        {"METRICS_TOKEN": "short"},
		"METRICS_STAGE_LABELS": {"METRICS_STAGE_LABELS": "-1"},
		"FAIR_SHARE_FLOOR":     {"FAIR_SHARE_FLOOR": "0"},
	} {
		_, err := config.Load(env(base(bad)))
		require.ErrorContains(t, err, name)
	}
}
