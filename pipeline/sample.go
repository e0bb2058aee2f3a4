package pipeline

import (
	"embed"
	"io/fs"
)

//go:embed sample
var sampleFS embed.FS

// SampleBundle returns the embedded demo pipeline (after ORC-02: mapper 1:1
// → designer 1:N over the mapper's topics → validator N:1), with output
// schemas so the offline model produces the arrays the split needs. The
// local embedded default (`orchable dev`) imports and runs it.
func SampleBundle() (*Bundle, error) {
	sub, err := fs.Sub(sampleFS, "sample/lesson-plan")
	if err != nil {
		return nil, err
	}
	return ParseBundle(sub, "lesson-plan")
}
