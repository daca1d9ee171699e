// Package testenv holds helpers for integration tests: the repository root,
// cached test tools (installed by test/tools/deps.sh), free ports, a
// throw-away versitygw S3 server and a fault-injecting proxy in front of it.
//
// It is meant to be imported only from _test.go files.
package testenv

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// modulePath is the module whose root RepoRoot looks for.
const modulePath = "github.com/tusgate/tusgate"

var (
	rootOnce sync.Once
	rootDir  string
)

// RepoRoot returns the repository root (directory holding go.mod), found from
// this source file or the working dir.
//
// A directory only counts when its go.mod declares the tusgate module, so a
// nested module (e.g. a tool with its own go.mod) is skipped.
func RepoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		var starts []string
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			starts = append(starts, filepath.Dir(file))
		}
		if wd, err := os.Getwd(); err == nil {
			starts = append(starts, wd)
		}
		for _, dir := range starts {
			if root := findModuleRoot(dir); root != "" {
				rootDir = root
				return
			}
		}
	})
	if rootDir == "" {
		t.Fatalf("testenv: cannot find the repository root (a go.mod declaring module %s) above this source file or the working directory", modulePath)
	}
	return rootDir
}

// findModuleRoot walks up from dir to the first directory whose go.mod
// declares modulePath, or returns "".
func findModuleRoot(dir string) string {
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(data) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func declaresModule(gomod []byte) bool {
	for line := range bytes.Lines(gomod) {
		f := strings.Fields(string(line))
		if len(f) >= 2 && f[0] == "module" && strings.Trim(f[1], `"`) == modulePath {
			return true
		}
	}
	return false
}

// toolEnv returns the environment variable that overrides the path of a tool:
// TUSGATE_TEST_ followed by the upper-cased name, with every character other
// than a letter or digit replaced by '_' (e.g. "redis-server" →
// TUSGATE_TEST_REDIS_SERVER).
func toolEnv(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return "TUSGATE_TEST_" + string(b)
}

// Tool returns the path of a cached tool (e.g. "versitygw", "staticcheck"):
// env TUSGATE_TEST_<UPPER> if set, else <root>/.cache/bin/<name>; t.Fatalf
// with "run `make test` (or bash test/tools/deps.sh) to install <name>" if
// missing. Never t.Skip.
func Tool(t testing.TB, name string) string {
	t.Helper()
	env := toolEnv(name)
	path, from := os.Getenv(env), "$"+env
	if path == "" {
		path, from = filepath.Join(RepoRoot(t), ".cache", "bin", name), ""
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		err = os.ErrPermission
	}
	if err != nil {
		where := path
		if from != "" {
			where = from + "=" + path
		}
		t.Fatalf("testenv: %s not usable (%s: %v): run `make test` (or bash test/tools/deps.sh) to install %s", name, where, err, name)
	}
	return path
}

// FreePort returns a free TCP port on 127.0.0.1.
//
// The port is free when FreePort returns; another process may take it before
// the caller binds it, so servers started on it should be checked.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: FreePort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
