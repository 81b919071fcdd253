package main

// The command line as mount(8) writes it.
//
// An fstab entry such as
//
//	mem /opt/stack/data/tempest fuse.lockfs allow_other,default_permissions,nofail 0 0
//
// or `mount -t fuse.lockfs mem /mnt/x` makes mount(8) run mount.fuse3,
// which strips "fuse.", drops user, nouser, users, auto, noauto, nofail
// and _netdev, adds dev and suid (unless nodev/nosuid were given) and
// finally runs
//
//	/bin/sh -c "'lockfs' 'mem' '/mnt/x' '-o' 'rw,allow_other,dev,suid'"
//
// (libfuse util/mount.fuse.c). mount(8) clears PATH before it runs a
// helper (util-linux sanitize_env), so /bin/sh looks lockfs up in its
// default path: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin;
// an fstab type of fuse./abs/path/to/lockfs avoids the lookup.
//
// rewriteArgs turns that form into the ordinary `lockfs mount` command
// line before cobra sees it, and every -o list into the flags it names
// (the gocryptfs prefixOArgs idea): -o log_file=/x,allow_other becomes
// --log-file=/x --allow-other. Any flag of `lockfs mount` can be given
// as an -o option, with '_' or '-' between words, except the few listed
// in notMountOptions.

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// ignoredMountOptions are options mount(8), mount.fuse3 or fstab
// conventions add that mean nothing to lockfs, accepted and dropped
// silently. A lockfs mount is always nosuid and nodev (the safer of
// each pair), writable, and executes nothing.
var ignoredMountOptions = map[string]bool{
	"rw": true, "dev": true, "suid": true, "nodev": true, "nosuid": true,
	"exec": true, "async": true, "defaults": true,
	"nofail": true, "_netdev": true, "auto": true, "noauto": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
}

// ignoredMountPrefixes are dropped too: x-* are for other programs
// (x-systemd.automount, x-mount.mkdir); comment= is the older form of
// x-*; user=NAME is what libmount passes for a user mount.
var ignoredMountPrefixes = []string{"x-", "comment=", "user="}

// notMountOptions are flags of `lockfs mount` that make no sense in an
// -o list, with the reason.
var notMountOptions = map[string]string{
	"foreground":   "mount(8) waits for its helper to exit; run 'lockfs mount --foreground' instead",
	"source":       "SOURCE is the first argument of 'lockfs SOURCE MOUNTPOINT'",
	"tempest-conf": "an fstab entry names its mountpoint; use 'lockfs mount --tempest-conf'",
	"ready-fd":     "internal",
	"help":         "",
}

// rewriteArgs returns the command line cobra should parse. commands are
// the names of lockfs's subcommands; mountFlags are the flags of
// `lockfs mount`, which -o options map to.
//
//   - `lockfs SOURCE MOUNTPOINT [-o OPTS] [flags]`, the mount helper
//     form, is recognised by a first argument that is neither a flag
//     nor a subcommand, and becomes `lockfs mount --source=SOURCE
//     MOUNTPOINT …`;
//   - in a mount command line every `-o a,b=c` (or `-oa,b=c`) before a
//     `--` becomes `--a --b=c`; other subcommands (`lockfs locks -o
//     COLUMNS`) are left alone.
//
// A bad -o option is a usage error.
func rewriteArgs(args []string, commands map[string]bool, mountFlags *pflag.FlagSet) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	var out []string
	rest := args
	switch first := args[0]; {
	case first == "mount":
		out, rest = []string{"mount"}, args[1:]
	case strings.HasPrefix(first, "-") || commands[first]:
		return args, nil
	default:
		out, rest = []string{"mount", "--source=" + first}, args[1:]
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		var opts string
		switch {
		case a == "--":
			return append(out, rest[i:]...), nil
		case a == "-o":
			if i+1 == len(rest) {
				return nil, usageError("-o needs a comma-separated list of mount options")
			}
			i++
			opts = rest[i]
		case strings.HasPrefix(a, "-o") && !strings.HasPrefix(a, "--"):
			opts = strings.TrimPrefix(strings.TrimPrefix(a, "-o"), "=")
		default:
			out = append(out, a)
			continue
		}
		flags, err := optionFlags(opts, mountFlags)
		if err != nil {
			return nil, err
		}
		out = append(out, flags...)
	}
	return out, nil
}

// optionFlags turns one -o list into flags.
func optionFlags(list string, mountFlags *pflag.FlagSet) ([]string, error) {
	var out []string
	for _, opt := range strings.Split(list, ",") {
		name, value, hasValue := strings.Cut(opt, "=")
		switch {
		case opt == "":
			continue
		case opt == "ro":
			return nil, usageError("-o ro: lockfs cannot be mounted read-only: programs open lock files " +
				"for writing to take write locks (lockf, fcntl F_WRLCK); remove ro")
		case ignoredMountOptions[opt] || hasIgnoredPrefix(opt):
			continue
		}
		flagName := strings.ReplaceAll(name, "_", "-")
		if why, bad := notMountOptions[flagName]; bad {
			if why != "" {
				why = ": " + why
			}
			return nil, usageError("-o %s is not a mount option%s", name, why)
		}
		f := mountFlags.Lookup(flagName)
		if f == nil || f.Hidden {
			return nil, usageError("unknown mount option %q (lockfs options: %s; ignored: %s)",
				name, strings.Join(knownMountOptions(mountFlags), ", "), strings.Join(ignoredMountOptionList(), ", "))
		}
		isBool := f.NoOptDefVal != ""
		switch {
		case hasValue:
			out = append(out, "--"+flagName+"="+value)
		case isBool:
			out = append(out, "--"+flagName)
		default:
			return nil, usageError("mount option %s needs a value: %s=%s", name, name, strings.ToUpper(f.Value.Type()))
		}
	}
	return out, nil
}

func hasIgnoredPrefix(opt string) bool {
	for _, p := range ignoredMountPrefixes {
		if strings.HasPrefix(opt, p) {
			return true
		}
	}
	return false
}

// knownMountOptions lists the -o spelling of every flag of `lockfs
// mount` that may be an option, "name=" for those that take a value.
func knownMountOptions(mountFlags *pflag.FlagSet) []string {
	var names []string
	mountFlags.VisitAll(func(f *pflag.Flag) {
		if _, bad := notMountOptions[f.Name]; bad || f.Hidden {
			return
		}
		n := strings.ReplaceAll(f.Name, "-", "_")
		if f.NoOptDefVal == "" {
			n += "="
		}
		names = append(names, n)
	})
	sort.Strings(names)
	return names
}

func ignoredMountOptionList() []string {
	var names []string
	for n := range ignoredMountOptions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, p := range ignoredMountPrefixes {
		names = append(names, p+"*")
	}
	return names
}

// commandNames returns the names and aliases of root's subcommands,
// plus cobra's implicit "help" and "completion".
func commandNames(root *cobra.Command) map[string]bool {
	m := map[string]bool{"help": true, "completion": true}
	for _, c := range root.Commands() {
		m[c.Name()] = true
		for _, a := range c.Aliases {
			m[a] = true
		}
	}
	return m
}
