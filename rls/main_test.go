package rls

import (
	"testing"

	"github.com/orchable/orchable/supabase/dbtest"
)

// TestMain runs goleak (inside dbtest.Main) and drops the package database, if a test made one.
func TestMain(m *testing.M) {
	dbtest.Main(m)
}
