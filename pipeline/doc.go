// Package pipeline holds the stage semantics of the engine: rendering a
// stage's prompt from a task's variables (Render), importing an original
// orchestration bundle as prompt templates (LoadBundle, Import), and running
// tasks through their stages.
package pipeline
