// Package inlinetest checks that a package's tiny per-packet helpers stay
// inlinable (like net/netip's inlining_test.go): a change that makes one
// too big to inline adds a call to every packet.
package inlinetest

import (
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// Check builds pkg with -gcflags=-m and fails t for each of funcs (as the
// compiler names them: "Value.LessThan", "(*Flow).DirOf") it cannot inline.
func Check(t *testing.T, pkg string, funcs ...string) {
	t.Helper()
	if runtime.Compiler != "gc" {
		t.Skip("inlining is checked with the gc compiler only")
	}
	out, err := exec.Command("go", "build", "-gcflags=-m", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-m %s: %v\n%s", pkg, err, out)
	}
	got := map[string]bool{}
	re := regexp.MustCompile(`: can inline (\S+)`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			got[m[1]] = true
		}
	}
	for _, fn := range funcs {
		if !got[fn] {
			t.Errorf("%s.%s is not inlinable", pkg, fn)
		}
	}
}
