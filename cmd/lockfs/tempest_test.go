package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTempestLockPath(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       string
		err        string // substring; want is then ignored
	}{
		{name: "devstack", conf: "[DEFAULT]\nlog_dir = /x\n\n[oslo_concurrency]\nlock_path = /opt/stack/data/tempest\n",
			want: "/opt/stack/data/tempest"},
		{name: "tempest init", conf: "[oslo_concurrency]\nlock_path=/home/u/cloud-01/tempest_lock\n",
			want: "/home/u/cloud-01/tempest_lock"},
		{name: "colon and quotes", conf: "[oslo_concurrency]\nlock_path: \"/srv/locks\"\n", want: "/srv/locks"},
		{name: "dashes", conf: "[oslo_concurrency]\nlock-path = /srv/locks\n", want: "/srv/locks"},
		{name: "last value wins", conf: "[oslo_concurrency]\nlock_path = /a\nlock_path = /b\n", want: "/b"},
		{name: "cleaned", conf: "[oslo_concurrency]\nlock_path = /a/b/../c/\n", want: "/a/c"},
		{name: "comments", conf: "# [oslo_concurrency]\n[oslo_concurrency]\n#lock_path = /a\n; lock_path = /b\nlock_path = /c\n", want: "/c"},
		{name: "deprecated DEFAULT", conf: "[DEFAULT]\nlock_path = /old\n", want: "/old"},
		{name: "oslo_concurrency wins over DEFAULT", conf: "[DEFAULT]\nlock_path = /old\n[oslo_concurrency]\nlock_path = /new\n", want: "/new"},
		{name: "other sections ignored", conf: "[compute]\nlock_path = /no\n[oslo_concurrency]\ndisable_process_locking = false\n",
			err: "sets no [oslo_concurrency] lock_path"},
		{name: "unset names tempest's default", conf: "[auth]\nuse_dynamic_credentials = true\n", err: "/tmp/tempest-lock"},
		{name: "empty", conf: "[oslo_concurrency]\nlock_path =\n", err: "sets no"},
		{name: "substitution", conf: "[oslo_concurrency]\nlock_path = $state_path/lock\n", err: "substitution"},
		{name: "relative", conf: "[oslo_concurrency]\nlock_path = tempest_lock\n", err: "relative"},
		{name: "bad header", conf: "[oslo_concurrency\nlock_path = /a\n", err: "bad section header"},
		{name: "bad line", conf: "[oslo_concurrency]\nlock_path\n", err: "no '='"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tempest.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := tempestLockPath(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("tempestLockPath = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tempestLockPath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := tempestLockPath(filepath.Join(t.TempDir(), "missing.conf")); err == nil || !strings.Contains(err.Error(), "--tempest-conf") {
		t.Errorf("missing file: %v, want an error naming --tempest-conf", err)
	}
}
