package model

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/orchable/orchable/supabase/dbtest"
)

func TestMain(m *testing.M) {
	// opencensus (pulled in by genai's auth dependencies) starts a worker in init.
	dbtest.Main(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}
