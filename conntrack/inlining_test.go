package conntrack

import (
	"testing"

	"github.com/rstguard/rstguard/internal/inlinetest"
)

// TestInlining keeps the key-building and lookup helpers inlinable.
func TestInlining(t *testing.T) {
	inlinetest.Check(t, "github.com/rstguard/rstguard/conntrack",
		"less", "mix", "(*Flow).DirOf", "(*Table).Flow", "Window.Contains",
		"scaledWin", "State.Synchronized",
		// the read accessors policy uses on every reset
		"(*Flow).State", "(*Flow).Peer", "(*Peer).End", "(*Peer).Flags")
}
