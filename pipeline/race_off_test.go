//go:build !race

package pipeline_test

// raceEnabled is true under the race detector, which slows the large
// scenarios past their budgets.
const raceEnabled = false
