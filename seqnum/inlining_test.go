package seqnum

import (
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestInlining keeps the per-packet helpers inlinable (like net/netip's
// inlining_test.go): a change that makes one of them too big to inline
// would add a call to every comparison on the packet path.
func TestInlining(t *testing.T) {
	if runtime.Compiler != "gc" {
		t.Skip("inlining is checked with the gc compiler only")
	}
	out, err := exec.Command("go", "build", "-gcflags=-m", "github.com/rstguard/rstguard/seqnum").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -gcflags=-m: %v\n%s", err, out)
	}
	got := map[string]bool{}
	re := regexp.MustCompile(`: can inline (\S+)`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			got[m[1]] = true
		}
	}
	for _, fn := range []string{
		"Value.LessThan", "Value.LessThanEq", "Value.InRange", "Value.InWindow",
		"Value.Add", "Value.Sub", "Value.Dist", "Max", "Min",
	} {
		if !got[fn] {
			t.Errorf("%s is not inlinable", fn)
		}
	}
}
