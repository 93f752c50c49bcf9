package metrics

import (
	"os"
	"regexp"
	"testing"
)

// TestREADMEListsEveryMetric: the README's metrics reference names every
// rstguard_ metric of the golden scrape, and nothing that does not exist.
func TestREADMEListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/metrics.golden")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (rstguard_\w+) `).FindAllSubmatch(golden, -1) {
		have[string(m[1])] = true
	}
	if len(have) < 10 {
		t.Fatalf("only %d metrics in the golden scrape", len(have))
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(rstguard_\\w+)`").FindAllSubmatch(readme, -1) {
		documented[string(m[1])] = true
	}
	for m := range have {
		if !documented[m] {
			t.Errorf("README.md does not document %s", m)
		}
	}
	for m := range documented {
		if !have[m] {
			t.Errorf("README.md documents %s, which the collector does not export", m)
		}
	}
}
