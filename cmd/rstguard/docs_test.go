package main

import (
	"flag"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	manPage        = "../../docs/rstguard.8"
	bashCompletion = "../../deploy/rstguard.bash-completion"
)

// flagSpelling is how the man page and the completion write a flag: two
// dashes, or one for a single letter (-v).
func flagSpelling(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// ownFlags are a command's flags other than the --version every command
// takes, by spelling, with their placeholders ("" for a boolean).
func ownFlags(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			return
		}
		name, _ := flag.UnquoteUsage(f)
		m[flagSpelling(f.Name)] = name
	})
	return m
}

// manSections splits a man page into its .SH and .SS sections, by title
// (quotes removed), with roff's \- read as -.
func manSections(src string) map[string]string {
	src = strings.ReplaceAll(src, `\-`, "-")
	m := map[string]string{}
	title := ""
	for _, line := range strings.Split(src, "\n") {
		if t, ok := strings.CutPrefix(line, ".SH "); ok {
			title = strings.Trim(t, `"`)
			continue
		}
		if t, ok := strings.CutPrefix(line, ".SS "); ok {
			title = strings.Trim(t, `"`)
			continue
		}
		m[title] += line + "\n"
	}
	return m
}

// manTaggedFlags returns the flags a section documents as .TP tags:
// ".B --flag" or ".BI --flag " PLACEHOLDER"", with their placeholders.
func manTaggedFlags(section string) map[string]string {
	tag := regexp.MustCompile(`^\.BI? (-{1,2}[a-z][a-z0-9-]*)(?: " ([A-Z]+)")?$`)
	m := map[string]string{}
	lines := strings.Split(section, "\n")
	for i := 1; i < len(lines); i++ {
		if lines[i-1] != ".TP" {
			continue
		}
		if mm := tag.FindStringSubmatch(lines[i]); mm != nil {
			m[mm[1]] = mm[2]
		}
	}
	return m
}

// TestManPage: docs/rstguard.8 documents every flag of every command, read
// from the flag sets, with the same placeholder, and no flag that is gone;
// the synopsis lists each command with its flags, and OPTIONS the ones
// every command takes.
func TestManPage(t *testing.T) {
	src, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	sections := manSections(string(src))
	synopsis := map[string]string{}
	for _, chunk := range strings.Split(sections["SYNOPSIS"], ".br\n") {
		if name, ok := strings.CutPrefix(strings.SplitN(chunk, "\n", 2)[0], ".B rstguard "); ok {
			synopsis[name] = chunk
		}
	}
	for _, c := range commands() {
		title := "rstguard " + c.name
		section, ok := sections[title]
		if !ok {
			t.Errorf("man page: no section %q", title)
			continue
		}
		if _, ok := synopsis[c.name]; !ok {
			t.Errorf("man page: %s is not in the SYNOPSIS", c.name)
		}
		if c.flags == nil {
			continue
		}
		want := ownFlags(c.flags())
		got := manTaggedFlags(section)
		for f, ph := range want {
			gph, ok := got[f]
			switch {
			case !ok:
				t.Errorf("man page, %s: flag %s is not documented (a .TP tag: .B%s %s)", title, f, map[bool]string{true: "I", false: ""}[ph != ""], f)
			case gph != ph:
				t.Errorf("man page, %s: flag %s has placeholder %q, the flag set says %q", title, f, gph, ph)
			}
			if !strings.Contains(synopsis[c.name], f) {
				t.Errorf("man page SYNOPSIS of %s lacks %s", c.name, f)
			}
		}
		for f := range got {
			if _, ok := want[f]; !ok {
				t.Errorf("man page, %s: documents %s, which the command does not take", title, f)
			}
		}
	}
	if _, ok := manTaggedFlags(sections["OPTIONS"])["--version"]; !ok {
		t.Error("man page OPTIONS does not document --version")
	}
	if !strings.Contains(sections["OPTIONS"], ".BR -h \", \" --help\n") {
		t.Error("man page OPTIONS does not document -h, --help")
	}
	if man, err := exec.LookPath("man"); err == nil {
		out, err := exec.Command(man, "--warnings", "-l", "-P", "cat", manPage).CombinedOutput()
		if err != nil || strings.Contains(string(out), "warning") {
			t.Errorf("man --warnings -l %s: %v\n%s", manPage, err, out)
		}
	}
}

// completeWith runs the bash completion function for the words of a
// command line; the last word is the one being completed.
func completeWith(t *testing.T, bash string, words ...string) []string {
	t.Helper()
	script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _rstguard; printf '%s\n' "${COMPREPLY[@]}"`
	out, err := exec.Command(bash, append([]string{"-c", script, "bash", bashCompletion}, words...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("completing %q: %v\n%s", words, err, out)
	}
	var got []string
	for _, w := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if w != "" {
			got = append(got, w)
		}
	}
	sort.Strings(got)
	return got
}

// TestBashCompletion: the completion passes bash -n, completes every
// command, and for each command exactly the flags of its flag set (plus
// --help), values for --format, and command names after help.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	if out, err := exec.Command(bash, "-n", bashCompletion).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", bashCompletion, err, out)
	}
	// Every command is offered (the completion may know a command this
	// table does not have yet: flows and status arrive from main).
	top, afterHelp := completeWith(t, bash, "rstguard", ""), completeWith(t, bash, "rstguard", "help", "")
	for _, c := range commands() {
		if !slices.Contains(top, c.name) {
			t.Errorf("rstguard <TAB> does not offer %s: %q", c.name, top)
		}
		if !slices.Contains(afterHelp, c.name) {
			t.Errorf("rstguard help <TAB> does not offer %s: %q", c.name, afterHelp)
		}
	}
	for _, f := range []string{"--help", "--version"} {
		if !slices.Contains(top, f) || slices.Contains(afterHelp, f) {
			t.Errorf("%s: offered after rstguard %v, after rstguard help %v; want only the former", f, slices.Contains(top, f), slices.Contains(afterHelp, f))
		}
	}
	for _, c := range commands() {
		if c.flags == nil {
			continue
		}
		want := []string{"--help", "--version"}
		for f := range ownFlags(c.flags()) {
			want = append(want, f)
		}
		sort.Strings(want)
		if got := completeWith(t, bash, "rstguard", c.name, "-"); !slices.Equal(got, want) {
			t.Errorf("rstguard %s -<TAB> completes %q, want the flag set's %q", c.name, got, want)
		}
	}
	if got := completeWith(t, bash, "rstguard", "replay", "--format", ""); !slices.Equal(got, []string{"jsonl", "text"}) {
		t.Errorf("rstguard replay --format <TAB> completes %q", got)
	}
	if got := completeWith(t, bash, "rstguard", "flows", ""); !slices.Equal(got, []string{"flush", "get"}) {
		t.Errorf("rstguard flows <TAB> completes %q", got)
	}
	if got := completeWith(t, bash, "rstguard", "rep"); !slices.Equal(got, []string{"replay"}) {
		t.Errorf("rstguard rep<TAB> completes %q", got)
	}
}
