package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestRewriteArgs checks the helper form and -o options against the real
// `lockfs mount` flag set.
func TestRewriteArgs(t *testing.T) {
	root := newRootCommand()
	for _, tc := range []struct {
		name string
		in   string
		want string // "" with err set
		err  string // substring of the usage error
	}{
		// The helper form, as mount.fuse3 runs it.
		{name: "helper minimal", in: "mem /mnt/x", want: "mount --source=mem /mnt/x"},
		{name: "mount(8) defaults", in: "mem /mnt/x -o rw,dev,suid", want: "mount --source=mem /mnt/x"},
		{name: "fstab line of the issue", in: "mem /opt/stack/data/tempest -o allow_other,default_permissions,dev,suid",
			want: "mount --source=mem /opt/stack/data/tempest --allow-other --default-permissions"},
		{name: "helper unknown backend is left to mount", in: "etcd://h:2379/x /mnt/x", want: "mount --source=etcd://h:2379/x /mnt/x"},
		{name: "helper with flags after", in: "mem /mnt/x -o allow_other --log-level debug",
			want: "mount --source=mem /mnt/x --allow-other --log-level debug"},

		// Option spellings.
		{name: "values", in: "mem /m -o log_file=/var/log/l.log,log_level=debug,log_format=json",
			want: "mount --source=mem /m --log-file=/var/log/l.log --log-level=debug --log-format=json"},
		{name: "root owner and mode", in: "mem /m -o uid=stack,gid=1000,mode=1777",
			want: "mount --source=mem /m --uid=stack --gid=1000 --mode=1777"},
		{name: "limits", in: "mem /m -o max_files=100,max_bytes=4096,max_file_size=1024",
			want: "mount --source=mem /m --max-files=100 --max-bytes=4096 --max-file-size=1024"},
		{name: "lifecycle", in: "mem /m -o pidfile=/run/l.pid,lazy_unmount,recover",
			want: "mount --source=mem /m --pidfile=/run/l.pid --lazy-unmount --recover"},
		{name: "dashes accepted too", in: "mem /m -o log-file=/l,allow-other", want: "mount --source=mem /m --log-file=/l --allow-other"},
		{name: "bool with value", in: "mem /m -o allow_other=false", want: "mount --source=mem /m --allow-other=false"},
		{name: "value with equals", in: "mem /m -o fsname=a=b", want: "mount --source=mem /m --fsname=a=b"},
		{name: "glued -o", in: "mem /m -oallow_other,noexec", want: "mount --source=mem /m --allow-other --noexec"},
		{name: "-o=", in: "mem /m -o=allow_other", want: "mount --source=mem /m --allow-other"},
		{name: "several -o", in: "mem /m -o allow_other -o mode=1777", want: "mount --source=mem /m --allow-other --mode=1777"},
		{name: "empty items", in: "mem /m -o ,allow_other,,", want: "mount --source=mem /m --allow-other"},
		{name: "-o before the positionals", in: "mount -o allow_other /m", want: "mount --allow-other /m"},

		// Dropped silently.
		{name: "dropped", in: "mem /m -o rw,dev,suid,nodev,nosuid,exec,async,defaults,nofail,_netdev,auto,noauto,user,users,nouser,owner,group",
			want: "mount --source=mem /m"},
		{name: "dropped prefixes", in: "mem /m -o x-systemd.automount,x-systemd.idle-timeout=60,x-mount.mkdir,comment=systemd.automount,user=stack",
			want: "mount --source=mem /m"},

		// Refused.
		{name: "ro", in: "mem /m -o ro", err: "read-only"},
		{name: "ro among others", in: "mem /m -o allow_other,ro,nofail", err: "read-only"},
		{name: "unknown", in: "mem /m -o max_read=4096", err: `unknown mount option "max_read"`},
		{name: "unknown lists known", in: "mem /m -o bogus", err: "allow_other, attr_timeout=, debug, default_permissions"},
		{name: "value missing", in: "mem /m -o log_file", err: "log_file needs a value"},
		{name: "foreground is not an option", in: "mem /m -o foreground", err: "mount(8) waits"},
		{name: "source is not an option", in: "mem /m -o source=mem", err: "first argument"},
		{name: "hidden flags are not options", in: "mem /m -o ready_fd=3", err: "not a mount option"},
		{name: "-o at the end", in: "mem /m -o", err: "-o needs"},

		// Left alone.
		{name: "after --", in: "mount -o allow_other -- -o", want: "mount --allow-other -- -o"},
		{name: "no arguments", in: "", want: ""},
		{name: "flag first", in: "--help", want: "--help"},
		{name: "other subcommand", in: "unmount -z /m", want: "unmount -z /m"},
		{name: "help", in: "help mount", want: "help mount"},
		{name: "-o of another subcommand", in: "umount -o x /m", want: "umount -o x /m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Fields(tc.in)
			got, err := rewriteArgs(in, commandNames(root), mountFlagSet(t, root))
			if tc.err != "" {
				var ee *exitError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ee) || ee.code != exitUsage {
					t.Fatalf("rewriteArgs(%q) = %q, %v; want a usage error containing %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, strings.Fields(tc.want)) {
				t.Fatalf("rewriteArgs(%q) = %q, %v; want %q", tc.in, got, err, strings.Fields(tc.want))
			}
		})
	}
}

// TestRewriteArgsParses feeds rewritten command lines to cobra: every -o
// option must land in the options struct.
func TestRewriteArgsParses(t *testing.T) {
	root := newRootCommand()
	args, err := rewriteArgs(strings.Fields("mem /mnt/x -o rw,allow_other,default_permissions,noexec,uid=7,gid=8,mode=1777,"+
		"log_file=/l,log_level=debug,log_format=json,pidfile=/p,fsname=locks,max_files=3,max_bytes=4,max_file_size=5,"+
		"lazy_unmount,recover,nofail,x-systemd.automount,dev,suid"), commandNames(root), mountFlagSet(t, root))
	if err != nil {
		t.Fatal(err)
	}
	mount, rest, err := root.Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := mount.ParseFlags(rest); err != nil {
		t.Fatalf("cobra rejects %q: %v", args, err)
	}
	f := mount.Flags()
	for name, want := range map[string]string{
		"source": "mem", "allow-other": "true", "default-permissions": "true", "noexec": "true",
		"uid": "7", "gid": "8", "mode": "1777", "log-file": "/l", "log-level": "debug", "log-format": "json",
		"pidfile": "/p", "fsname": "locks", "max-files": "3", "max-bytes": "4", "max-file-size": "5",
		"lazy-unmount": "true", "recover": "true", "foreground": "false",
	} {
		if got := f.Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", name, got, want)
		}
	}
	if got := f.Args(); !slices.Equal(got, []string{"/mnt/x"}) {
		t.Errorf("positional arguments %q, want [/mnt/x]", got)
	}
}

func mountFlagSet(t *testing.T, root *cobra.Command) *pflag.FlagSet {
	t.Helper()
	for _, c := range root.Commands() {
		if c.Name() == "mount" {
			return c.Flags()
		}
	}
	t.Fatal("no mount command")
	return nil
}
