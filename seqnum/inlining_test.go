package seqnum

import (
	"testing"

	"github.com/rstguard/rstguard/internal/inlinetest"
)

// TestInlining keeps the comparisons used on every packet inlinable.
func TestInlining(t *testing.T) {
	inlinetest.Check(t, "github.com/rstguard/rstguard/seqnum",
		"Value.LessThan", "Value.LessThanEq", "Value.InRange", "Value.InWindow",
		"Value.Add", "Value.Sub", "Value.Dist", "Max", "Min")
}
