package script

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scriptDir makes a directory programs may run from: root-owned 0755
// under the test's temporary directory (itself under the sticky /tmp).
func scriptDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the checks want root-owned files and switch users")
	}
	d := filepath.Join(t.TempDir(), "scripts")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's directories are 0700; the script user must pass them.
	for p := filepath.Dir(d); p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func writeScript(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		t.Fatal(err)
	}
	return p
}

func newRunner(t *testing.T, o Options) *Runner {
	t.Helper()
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCheckRefuses(t *testing.T) {
	dir := scriptDir(t)
	good := writeScript(t, dir, "good", "exit 0", 0o755)
	groupW := writeScript(t, dir, "group-writable", "exit 0", 0o775)
	if err := os.Chown(groupW, 0, 100); err != nil {
		t.Fatal(err)
	}
	rootGroupW := writeScript(t, dir, "root-group-writable", "exit 0", 0o775)
	worldW := writeScript(t, dir, "world-writable", "exit 0", 0o757)
	owned := writeScript(t, dir, "owned", "exit 0", 0o755)
	if err := os.Chown(owned, 1000, 0); err != nil {
		t.Fatal(err)
	}
	notExec := writeScript(t, dir, "not-exec", "exit 0", 0o644)
	badDir := filepath.Join(dir, "open")
	if err := os.Mkdir(badDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(badDir, 0o777); err != nil {
		t.Fatal(err)
	}
	inBadDir := writeScript(t, badDir, "x", "exit 0", 0o755)
	userDir := filepath.Join(dir, "user")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	inUserDir := writeScript(t, userDir, "x", "exit 0", 0o755)
	if err := os.Chown(userDir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	// A link from inside to a program elsewhere is judged where it
	// points to, not where it is.
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Mkdir(elsewhere, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(elsewhere, 0o777)
	target := writeScript(t, elsewhere, "t", "exit 0", 0o755)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	r := newRunner(t, Options{Dirs: []string{dir}})
	for _, tt := range []struct {
		prog string
		want Reason
	}{
		{good, ""},
		{rootGroupW, ""},
		{"", ReasonEmpty},
		{"good", ReasonNotAbsolute},
		{dir + "/../scripts/good", ReasonNotAbsolute},
		{"/bin/sh", ReasonOutsideDirs},
		{dir + "x/good", ReasonOutsideDirs}, // a sibling that shares the prefix
		{filepath.Join(dir, "missing"), ReasonMissing},
		{dir, ReasonOutsideDirs},
		{notExec, ReasonMissing},
		{groupW, ReasonWritable},
		{worldW, ReasonWritable},
		{owned, ReasonOwner},
		{inBadDir, ReasonWritable},
		{inUserDir, ReasonOwner},
		{link, ReasonWritable},
	} {
		err := r.Check(tt.prog)
		var re *RefusedError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want it allowed", tt.prog, err)
		case tt.want != "" && !errors.As(err, &re):
			t.Errorf("Check(%q) = %v, want refused for %s", tt.prog, err, tt.want)
		case tt.want != "" && re.Reason != tt.want:
			t.Errorf("Check(%q) refused for %s (%v), want %s", tt.prog, re.Reason, err, tt.want)
		}
	}
	if err := newRunner(t, Options{}).Check(good); err == nil || !strings.Contains(err.Error(), "--script-dir") {
		t.Errorf("without script dirs: %v, want a refusal naming --script-dir", err)
	}
}

func TestNewRefusesRelativeDir(t *testing.T) {
	if _, err := New(Options{Dirs: []string{"scripts"}}); err == nil {
		t.Error("a relative script directory was accepted")
	}
	if _, err := New(Options{User: "no-such-user-shoal"}); err == nil {
		t.Error("an unknown script user was accepted")
	}
}

func TestRunsAsScriptUser(t *testing.T) {
	dir := scriptDir(t)
	id := writeScript(t, dir, "id", "id -u; id -g; id -G", 0o755)
	r := newRunner(t, Options{Dirs: []string{dir}})
	res := r.Run(context.Background(), Command{Argv: []string{id}, Timeout: 5 * time.Second})
	if res.Err != nil {
		t.Fatalf("run: %v: %s", res.Err, res.Output)
	}
	if got := strings.Fields(string(res.Output)); len(got) != 3 || got[0] != "65534" || got[1] != "65534" || got[2] != "65534" {
		t.Errorf("uid, gid, groups = %q, want nobody's 65534 without root's groups", got)
	}
}

func TestArgumentsStayWhole(t *testing.T) {
	dir := scriptDir(t)
	args := writeScript(t, dir, "args", `for a in "$@"; do printf '<%s>\n' "$a"; done; printf 'env:%s\n' "$SHOAL_X"`, 0o755)
	r := newRunner(t, Options{Dirs: []string{dir}})
	marker := filepath.Join(t.TempDir(), "pwned")
	evil := "10.0.0.1; touch " + marker + " $(touch " + marker + ") `touch " + marker + "`"
	res := r.Run(context.Background(), Command{Argv: []string{args, evil, "two words"}, Env: []string{"SHOAL_X=" + evil}, Timeout: 5 * time.Second})
	if res.Err != nil {
		t.Fatalf("run: %v: %s", res.Err, res.Output)
	}
	want := "<" + evil + ">\n<two words>\nenv:" + evil + "\n"
	if string(res.Output) != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("an argument was run by a shell")
	}
}

func TestEnvironmentIsMinimal(t *testing.T) {
	dir := scriptDir(t)
	env := writeScript(t, dir, "env", "env", 0o755)
	t.Setenv("SHOAL_TOKEN", "secret-token")
	r := newRunner(t, Options{Dirs: []string{dir}})
	res := r.Run(context.Background(), Command{Argv: []string{env}, Env: []string{"SHOAL_EVENT=leader"}, Timeout: 5 * time.Second})
	if res.Err != nil {
		t.Fatalf("run: %v", res.Err)
	}
	if strings.Contains(string(res.Output), "secret-token") {
		t.Error("lvsd's environment leaked into a program")
	}
	if !strings.Contains(string(res.Output), "SHOAL_EVENT=leader") {
		t.Errorf("the command's environment is missing: %s", res.Output)
	}
}

func TestTimeoutKillsTheGroup(t *testing.T) {
	dir := scriptDir(t)
	hang := writeScript(t, dir, "hang", "sleep 30 & sleep 30 & wait", 0o755)
	r := newRunner(t, Options{Dirs: []string{dir}})
	start := time.Now()
	res := r.Run(context.Background(), Command{Argv: []string{hang}, Timeout: 200 * time.Millisecond})
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the deadline", res.Err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a hanging program with children held the caller %s", took)
	}
}

func TestShellNeedsPermission(t *testing.T) {
	dir := scriptDir(t)
	cmd := Command{Argv: []string{"echo $((1+2)) $0", "arg0"}, Shell: true, Timeout: 5 * time.Second}
	res := newRunner(t, Options{Dirs: []string{dir}}).Run(context.Background(), cmd)
	var re *RefusedError
	if !errors.As(res.Err, &re) || re.Reason != ReasonShell {
		t.Fatalf("shell without --allow-shell-scripts: %v, want refused", res.Err)
	}
	res = newRunner(t, Options{Dirs: []string{dir}, AllowShell: true}).Run(context.Background(), cmd)
	if res.Err != nil || string(res.Output) != "3 arg0\n" {
		t.Errorf("allowed shell: %v, %q", res.Err, res.Output)
	}
}

func TestExitStatusAndOutputBound(t *testing.T) {
	dir := scriptDir(t)
	loud := writeScript(t, dir, "loud", "head -c 1000000 /dev/zero; exit 3", 0o755)
	res := newRunner(t, Options{Dirs: []string{dir}}).Run(context.Background(), Command{Argv: []string{loud}, Timeout: 5 * time.Second})
	var ee *exec.ExitError
	if !errors.As(res.Err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("err %v, want exit status 3", res.Err)
	}
	if len(res.Output) != MaxOutput {
		t.Errorf("kept %d bytes of output, want %d", len(res.Output), MaxOutput)
	}
}
