package config

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestRuntimeGC(t *testing.T) {
	t.Parallel()
	const gib = int64(1) << 30
	meminfo := func(kb string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("MemTotal:       " + kb + " kB\nMemFree:         1000 kB\n")}
	}
	tests := []struct {
		name   string
		env    map[string]string
		files  fstest.MapFS
		expect RuntimeGC
	}{
		{
			name:   "MachineMemory",
			files:  fstest.MapFS{"proc/meminfo": meminfo("1048576")}, // 1 GiB
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default", MemoryLimit: gib * 8 / 10, MemoryLimitFrom: "/proc/meminfo"},
		},
		{
			name: "CgroupV2Limit",
			files: fstest.MapFS{
				"proc/meminfo":             meminfo("25165824"), // 24 GiB
				"sys/fs/cgroup/memory.max": {Data: []byte("536870912\n")},
			},
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default", MemoryLimit: 429496729, MemoryLimitFrom: "/sys/fs/cgroup/memory.max"},
		},
		{
			name: "CgroupV2Unlimited",
			files: fstest.MapFS{
				"proc/meminfo":             meminfo("1048576"),
				"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
			},
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default", MemoryLimit: gib * 8 / 10, MemoryLimitFrom: "/proc/meminfo"},
		},
		{
			name: "CgroupV1UnlimitedIsAHugeNumber",
			files: fstest.MapFS{
				"proc/meminfo": meminfo("1048576"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
			},
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default", MemoryLimit: gib * 8 / 10, MemoryLimitFrom: "/proc/meminfo"},
		},
		{
			name: "CgroupV1Limit",
			files: fstest.MapFS{
				"proc/meminfo": meminfo("1048576"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("268435456\n")},
			},
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default", MemoryLimit: 214748364, MemoryLimitFrom: "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
		},
		{
			name:   "NoMemorySizeNoLimit",
			files:  fstest.MapFS{"proc/meminfo": {Data: []byte("MemFree: 10 kB\n")}},
			expect: RuntimeGC{GCPercent: GCPercentDefault, GCPercentFrom: "default"},
		},
		{
			name:   "OperatorsGOGCAndGOMEMLIMITWin",
			env:    map[string]string{"GOGC": "100", "GOMEMLIMIT": "200MiB"},
			files:  fstest.MapFS{"proc/meminfo": meminfo("1048576")},
			expect: RuntimeGC{GCPercent: 100, GCPercentFrom: "GOGC", MemoryLimitFrom: "GOMEMLIMIT"},
		},
		{
			name:   "GOGCNotANumberIsGosDefault",
			env:    map[string]string{"GOGC": "fast"},
			files:  fstest.MapFS{},
			expect: RuntimeGC{GCPercent: 100, GCPercentFrom: "GOGC"},
		},
		{
			name:   "GOGCOff",
			env:    map[string]string{"GOGC": "off"},
			files:  fstest.MapFS{},
			expect: RuntimeGC{GCPercent: -1, GCPercentFrom: "GOGC"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := runtimeGC(func(k string) string { return tt.env[k] }, tt.files)
			require.Equal(t, tt.expect, got)
		})
	}
}

// TestTuneRuntime changes the test process's collector and puts it back, so
// it does not run in parallel with the package's other tests.
func TestTuneRuntime(t *testing.T) { //nolint:paralleltest // changes process-wide settings
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	read := func() (int64, int64) {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
		metrics.Read(s)
		return asInt64(s[0].Value.Uint64()), asInt64(s[1].Value.Uint64())
	}

	g := TuneRuntime(func(string) string { return "" })
	percent, limit := read()
	require.Equal(t, int64(GCPercentDefault), percent)
	require.Equal(t, "default", g.GCPercentFrom)
	if g.MemoryLimit > 0 { // this machine's memory could be read
		require.Equal(t, g.MemoryLimit, limit)
	} else {
		require.Equal(t, prevLimit, limit)
	}

	// Set in the environment, both are the runtime's: TuneRuntime leaves them.
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(123 << 20)
	g = TuneRuntime(func(k string) string { return map[string]string{"GOGC": "100", "GOMEMLIMIT": "123MiB"}[k] })
	percent, limit = read()
	require.Equal(t, int64(100), percent)
	require.Equal(t, int64(123<<20), limit)
	require.Equal(t, RuntimeGC{GCPercent: 100, GCPercentFrom: "GOGC", MemoryLimitFrom: "GOMEMLIMIT"}, g)
}

func asInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
