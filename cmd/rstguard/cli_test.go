package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testVersion is stamped into the binary the CLI tests run.
const testVersion = "1.2.3-clitest"

var cliBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// TestMain removes the binary rstguardBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if cliBin.path != "" {
		os.RemoveAll(filepath.Dir(cliBin.path))
	}
	os.Exit(code)
}

// rstguardBinary builds this command once per test binary, with
// testVersion stamped in (removed by TestMain).
func rstguardBinary(t *testing.T) string {
	t.Helper()
	cliBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "rstguard-cli")
		if err != nil {
			cliBin.err = err
			return
		}
		cliBin.path = filepath.Join(dir, "rstguard")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", "-X main.version="+testVersion, "-o", cliBin.path, ".")
		cliBin.out, cliBin.err = cmd.CombinedOutput()
	})
	if cliBin.err != nil {
		t.Fatalf("go build: %v\n%s", cliBin.err, cliBin.out)
	}
	return cliBin.path
}

// runCLI runs the built binary with args and returns its exit code and
// streams.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, rstguardBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rstguard %q: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// commandNames are the subcommands that have flag sets (all but help).
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		if c.flags != nil {
			names = append(names, c.name)
		}
	}
	return names
}

// TestCLIConventions: --version and -h/--help work for the binary and every
// subcommand, on stdout with exit 0; `help COMMAND` prints what
// `COMMAND --help` prints; usage mistakes go to stderr with exit 2.
func TestCLIConventions(t *testing.T) {
	wantVersion := "rstguard " + testVersion + "\n"
	type want struct {
		code           int
		stdout, stderr string // substrings; "" for an empty stream
	}
	cases := map[string]want{
		"--version":      {0, wantVersion, ""},
		"-version":       {0, wantVersion, ""},
		"version":        {0, wantVersion, ""},
		"-h":             {0, "usage: rstguard COMMAND", ""},
		"--help":         {0, "usage: rstguard COMMAND", ""},
		"help":           {0, "usage: rstguard COMMAND", ""},
		"":               {2, "", "usage: rstguard COMMAND"},
		"bogus":          {2, "", `unknown command "bogus"`},
		"help bogus":     {2, "", `unknown command "bogus"`},
		"help run extra": {2, "", "usage: rstguard help"},
		"help help":      {0, "usage: rstguard help", ""},
	}
	for _, name := range commandNames() {
		cases[name+" --version"] = want{0, wantVersion, ""}
		cases[name+" -h"] = want{0, "usage: rstguard " + name, ""}
		cases[name+" --help"] = want{0, "usage: rstguard " + name, ""}
		cases["help "+name] = want{0, "usage: rstguard " + name, ""}
		cases[name+" --no-such-flag"] = want{2, "", "flag provided but not defined: -no-such-flag\n\nusage: rstguard " + name}
	}
	for line, w := range cases {
		code, out, errOut := runCLI(t, strings.Fields(line)...)
		if code != w.code || !strings.Contains(out, w.stdout) || !strings.Contains(errOut, w.stderr) ||
			(w.stdout == "") != (out == "") || (w.stderr == "") != (errOut == "") {
			t.Errorf("rstguard %s: exit %d\nstdout: %q\nstderr: %q\nwant exit %d, stdout with %q, stderr with %q",
				line, code, out, errOut, w.code, w.stdout, w.stderr)
		}
	}
	for _, name := range commandNames() {
		_, help, _ := runCLI(t, name, "--help")
		_, viaHelp, _ := runCLI(t, "help", name)
		if help != viaHelp {
			t.Errorf("rstguard help %s differs from rstguard %s --help:\n%s\n---\n%s", name, name, viaHelp, help)
		}
		for _, f := range []string{"-version", "-h, --help"} {
			if !strings.Contains(help, "\n  "+f) {
				t.Errorf("rstguard %s --help does not list %s:\n%s", name, f, help)
			}
		}
	}
}

// TestFlagPlaceholders: every flag that takes a value names it with an
// upper-case placeholder (the backquoted word of its usage string), never
// Go's default "string" or "value", and every usage is a phrase that starts
// in lower case, like the flag package's own.
func TestFlagPlaceholders(t *testing.T) {
	placeholder := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	for _, c := range commands() {
		if c.flags == nil {
			continue
		}
		fs := c.flags()
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				if name != "" {
					t.Errorf("%s --%s: a boolean flag with placeholder %q", c.name, f.Name, name)
				}
			} else if !placeholder.MatchString(name) {
				t.Errorf("%s --%s: placeholder %q, want an upper-case word in backquotes in %q", c.name, f.Name, name, f.Usage)
			}
			if usage == "" || strings.ToLower(usage[:1]) != usage[:1] {
				t.Errorf("%s --%s: usage %q should start in lower case", c.name, f.Name, usage)
			}
		})
	}
}

// TestNoExternalDocs: user-facing text never points to a document that is
// not in the repository (SPEC.md lives outside it): the help of every
// command, the README, the example configuration, the man page and what
// deploy/ installs.
func TestNoExternalDocs(t *testing.T) {
	texts := map[string]string{}
	var b bytes.Buffer
	usage(&b)
	texts["rstguard --help"] = b.String()
	for _, c := range commands() {
		if c.flags == nil {
			continue
		}
		b.Reset()
		printHelp(c.flags(), &b)
		texts["rstguard help "+c.name] = b.String()
	}
	files, err := filepath.Glob("../../deploy/*")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md", "../../config.example.toml", "../../docs/rstguard.8")
	for _, f := range files {
		if strings.HasSuffix(f, ".go") {
			continue // code comments may cite the spec
		}
		if fi, err := os.Stat(f); err != nil || fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(data)
	}
	spec := regexp.MustCompile(`\bSPEC\b`)
	for name, text := range texts {
		for i, line := range strings.Split(text, "\n") {
			if spec.MatchString(line) {
				t.Errorf("%s:%d cites SPEC, which is not in the repository: %s", name, i+1, line)
			}
		}
	}
}
