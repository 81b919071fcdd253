package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// The systemd units shipped in contrib/systemd: systemd-analyze verify
// accepts them (where it is installed), and the lockfs command lines in
// them parse, so that the units cannot drift from the flags.

const contribSystemd = "../../contrib/systemd"

// unitFile reads a unit file into section → key → values.
func unitFile(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(contribSystemd, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", name, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func one(t *testing.T, unit map[string]map[string][]string, section, key string) string {
	t.Helper()
	v := unit[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one value", section, key, v)
	}
	return v[0]
}

// systemdVerify runs systemd-analyze verify on a copy of the unit named
// as, with the lockfs binary path replaced by an executable that exists
// (verify checks that ExecStart= can be executed). Any message fails the
// test: verify exits 0 on mere warnings such as an unknown key.
func systemdVerify(t *testing.T, unit, as string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not installed: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(contribSystemd, unit))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), as)
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/lockfs", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", as, err, out)
	}
}

// parseLockfs parses a lockfs command line the way main does and returns
// the mount command's flags after parsing.
func parseLockfs(t *testing.T, args []string) map[string]string {
	t.Helper()
	root := newRootCommand()
	args, err := rewriteArgs(args, commandNames(root), mountFlagSet(t, root))
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	cmd, rest, err := root.Find(args)
	if err != nil || cmd.Name() != "mount" {
		t.Fatalf("%q: not a mount command (%v)", args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	got := map[string]string{"MOUNTPOINT": strings.Join(cmd.Flags().Args(), " ")}
	cmd.Flags().VisitAll(func(f *pflag.Flag) { got[f.Name] = f.Value.String() })
	return got
}

func TestContribService(t *testing.T) {
	unit := unitFile(t, "lockfs@.service")
	if got := one(t, unit, "Service", "Type"); got != "notify" {
		t.Errorf("Type=%s, want notify", got)
	}
	for _, key := range []string{"PrivateTmp", "ProtectSystem", "PrivateMounts", "ProtectHome"} {
		if v, ok := unit["Service"][key]; ok {
			t.Errorf("%s=%v would hide the mount in a namespace of its own", key, v)
		}
	}
	// ExecStart with the instance opt-stack-data-tempest and the
	// default LOCKFS_OPTIONS.
	env := strings.Trim(one(t, unit, "Service", "Environment"), `"`)
	opts, ok := strings.CutPrefix(env, "LOCKFS_OPTIONS=")
	if !ok {
		t.Fatalf("Environment=%s, want LOCKFS_OPTIONS=", env)
	}
	var args []string
	for i, w := range strings.Fields(one(t, unit, "Service", "ExecStart")) {
		switch {
		case i == 0:
			if w != "/usr/local/bin/lockfs" {
				t.Errorf("ExecStart runs %s, want /usr/local/bin/lockfs (the README installs it there)", w)
			}
		case w == "$LOCKFS_OPTIONS":
			args = append(args, strings.Fields(opts)...)
		default:
			w = strings.ReplaceAll(w, "%i", "opt-stack-data-tempest")
			args = append(args, strings.ReplaceAll(w, "%f", "/opt/stack/data/tempest"))
		}
	}
	got := parseLockfs(t, args)
	for flag, want := range map[string]string{
		"foreground": "true", "recover": "true", "allow-other": "true", "mode": "1777",
		"log-file": "/var/log/lockfs/opt-stack-data-tempest.log", "MOUNTPOINT": "/opt/stack/data/tempest",
	} {
		if got[flag] != want {
			t.Errorf("ExecStart %q: %s = %q, want %q", args, flag, got[flag], want)
		}
	}
	systemdVerify(t, "lockfs@.service", "lockfs@opt-stack-data-tempest.service")
}

func TestContribMount(t *testing.T) {
	const name = "opt-stack-data-tempest.mount"
	unit := unitFile(t, name)
	what, where := one(t, unit, "Mount", "What"), one(t, unit, "Mount", "Where")
	if typ := one(t, unit, "Mount", "Type"); typ != "fuse.lockfs" {
		t.Errorf("Type=%s, want fuse.lockfs", typ)
	}
	// What mount.fuse3 runs for it (plus the dev,suid it adds).
	got := parseLockfs(t, []string{what, where, "-o", one(t, unit, "Mount", "Options") + ",dev,suid"})
	for flag, want := range map[string]string{
		"source": "mem", "allow-other": "true", "default-permissions": "true", "mode": "1777",
		"foreground": "false", "MOUNTPOINT": "/opt/stack/data/tempest",
	} {
		if got[flag] != want {
			t.Errorf("%s: %s = %q, want %q", name, flag, got[flag], want)
		}
	}
	systemdVerify(t, name, name)
}
