package postgresttest_test

import (
	"testing"

	"github.com/orchable/orchable/supabase/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }
