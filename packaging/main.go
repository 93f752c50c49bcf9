// Command packaging builds rstguard's Debian package with nfpm used as a
// library: `make deb` runs it. It is a module of its own, so that nfpm and
// its dependencies never enter the daemon's module graph.
//
//	go run . -root .. -binary ../bin/deb/rstguard -version 1.2.3 -out ../bin
//
// The layout (Debian's, where make install uses /usr/local):
//
//	/usr/sbin/rstguard                                the binary
//	/lib/systemd/system/rstguard.service              the unit, ExecStart=/usr/sbin/rstguard
//	/etc/rstguard/config.toml                         conffile, from config.example.toml
//	/usr/share/rstguard/                              rules, rstguard-rules.sh, nftables.conf,
//	                                                  dashboard, alerts, config.example.toml
//	/usr/share/man/man8/rstguard.8.gz                 the man page
//	/usr/share/bash-completion/completions/rstguard   bash completion
//	/usr/share/doc/rstguard/README.md                 the README
//
// The maintainer scripts are in debian/: postinst reloads systemd and
// never enables or starts the service on a fresh install (an upgrade
// restarts it only if it was running), prerm stops it on removal, postrm
// cleans up on purge.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	sbin     = "/usr/sbin/rstguard"
	unitDir  = "/lib/systemd/system"
	shareDir = "/usr/share/rstguard"
	confFile = "/etc/rstguard/config.toml"
)

// sharedFiles are installed under shareDir, as deploy/install.sh installs
// them under $PREFIX/share/rstguard (TestDeb compares the two).
var sharedFiles = []struct {
	src  string // relative to the repository root
	mode os.FileMode
}{
	{"deploy/iptables.rules", 0o644},
	{"deploy/ip6tables.rules", 0o644},
	{"deploy/nftables.conf", 0o644},
	{"deploy/grafana-dashboard.json", 0o644},
	{"deploy/alerts.yml", 0o644},
	{"deploy/rstguard-rules.sh", 0o755},
	{"config.example.toml", 0o644},
}

func main() {
	root := flag.String("root", "..", "the repository's `DIR`")
	binary := flag.String("binary", "", "the rstguard `BINARY` to package (build it with CGO_ENABLED=0)")
	version := flag.String("version", "", "the package `VERSION` (Debian syntax; make deb derives it from git)")
	arch := flag.String("arch", runtime.GOARCH, "the `GOARCH` the binary was built for; nfpm names it in Debian's terms (386 is i386, ppc64le is ppc64el)")
	out := flag.String("out", ".", "the `DIR` to write rstguard_VERSION_ARCH.deb into")
	flag.Parse()
	if *binary == "" || *version == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: packaging -binary BINARY -version VERSION [-root DIR] [-arch ARCH] [-out DIR]")
		os.Exit(2)
	}
	path, err := build(*root, *binary, *version, *arch, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// build writes the package and returns its path.
func build(root, binary, version, arch, outDir string) (string, error) {
	tmp, err := os.MkdirTemp("", "rstguard-deb")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	src := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

	// The unit names /usr/local/bin/rstguard (make install's path).
	unit, err := os.ReadFile(src("deploy/rstguard.service"))
	if err != nil {
		return "", err
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/rstguard ")) {
		return "", fmt.Errorf("deploy/rstguard.service: no ExecStart=/usr/local/bin/rstguard to rewrite")
	}
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/rstguard"), []byte(sbin))
	unitPath := filepath.Join(tmp, "rstguard.service")
	if err := os.WriteFile(unitPath, unit, 0o644); err != nil {
		return "", err
	}
	// Debian policy 12.1: man pages compressed with gzip -9n.
	manPath := filepath.Join(tmp, "rstguard.8.gz")
	if err := gzipFile(src("docs/rstguard.8"), manPath); err != nil {
		return "", err
	}

	mtime := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" { // reproducible builds
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		mtime = time.Unix(sec, 0).UTC()
	}
	file := func(source, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: source, Destination: dst,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: mtime}}
	}
	contents := files.Contents{
		file(binary, sbin, 0o755),
		file(unitPath, unitDir+"/rstguard.service", 0o644),
		file(manPath, "/usr/share/man/man8/rstguard.8.gz", 0o644),
		file(src("deploy/rstguard.bash-completion"), "/usr/share/bash-completion/completions/rstguard", 0o644),
		file(src("README.md"), "/usr/share/doc/rstguard/README.md", 0o644),
	}
	conf := file(src("config.example.toml"), confFile, 0o644)
	conf.Type = files.TypeConfigNoReplace // a conffile: dpkg keeps the operator's edits
	contents = append(contents, conf)
	for _, f := range sharedFiles {
		contents = append(contents, file(src(f.src), shareDir+"/"+filepath.Base(f.src), f.mode))
	}

	info := &nfpm.Info{
		Name:          "rstguard",
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // already Debian syntax
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "rstguard developers <rstguard@users.noreply.github.com>",
		Homepage:      "https://github.com/rstguard/rstguard",
		Description: "TCP reset validator for Linux gateways (NFQUEUE)\n" +
			"rstguard sits in the forwarding path through NFQUEUE, tracks each flow's\n" +
			"sequence windows in both directions and drops forged and blind TCP resets\n" +
			"(RFC 5961, RFC 9293) while every other packet passes. Fail-open by design.\n" +
			"The service is installed but neither enabled nor started.",
		MTime: mtime,
		Overridables: nfpm.Overridables{
			Recommends: []string{"iptables | nftables"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: src("packaging/debian/postinst"),
				PreRemove:   src("packaging/debian/prerm"),
				PostRemove:  src("packaging/debian/postrm"),
			},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(outDir, pkg.ConventionalFileName(info))
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return "", err
	}
	info.Target = path
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(f.Name(), path)
}

// gzipFile compresses src into dst like gzip -9n (no name, no time).
func gzipFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}
