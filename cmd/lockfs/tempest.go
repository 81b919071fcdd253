package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// tempestDefaultLockPath is where Tempest locks when its configuration
// sets no lock_path and $OSLO_LOCK_PATH is unset: tempest/config.py calls
// lockutils.set_defaults(os.path.join(tempfile.gettempdir(),
// 'tempest-lock')).
const tempestDefaultLockPath = "/tmp/tempest-lock"

// tempestLockPath returns the lock_path a tempest.conf sets, read the way
// oslo.config reads it: [oslo_concurrency] lock_path, or else the
// deprecated [DEFAULT] lock_path; in each section the last value wins.
// It is an error when neither is set (Tempest would then use
// $OSLO_LOCK_PATH or /tmp/tempest-lock, which lockfs does not guess), when
// the value is relative (relative to Tempest's working directory, which
// lockfs cannot know) or uses oslo.config's $substitution.
func tempestLockPath(conf string) (string, error) {
	f, err := os.Open(conf)
	if err != nil {
		return "", fmt.Errorf("--tempest-conf: %w", err)
	}
	defer f.Close()
	values, err := parseOsloConfig(f, "lock_path")
	if err != nil {
		return "", fmt.Errorf("--tempest-conf %s: %w", conf, err)
	}
	where, path := "[oslo_concurrency] lock_path", values["oslo_concurrency"]
	if path == "" {
		where, path = "[DEFAULT] lock_path", values["DEFAULT"]
	}
	switch {
	case path == "":
		return "", fmt.Errorf("%s sets no [oslo_concurrency] lock_path: Tempest then locks in $OSLO_LOCK_PATH, "+
			"or %s when that is unset; set lock_path in %s, or mount lockfs there: 'lockfs mount %s'",
			conf, tempestDefaultLockPath, conf, tempestDefaultLockPath)
	case strings.Contains(path, "$"):
		return "", fmt.Errorf("%s: %s = %s uses oslo.config substitution, which lockfs does not expand; "+
			"give the directory instead: 'lockfs mount DIR'", conf, where, path)
	case !filepath.IsAbs(path):
		return "", fmt.Errorf("%s: %s = %s is relative (to the directory Tempest runs in); "+
			"give the absolute directory instead: 'lockfs mount DIR'", conf, where, path)
	}
	return filepath.Clean(path), nil
}

// parseOsloConfig returns, per section, the last value of option key in
// an oslo.config INI file (oslo_config/iniparser.py): "[section]"
// headers, "key = value" or "key: value" lines, '#' and ';' comment
// lines, indented continuation lines, values stripped of surrounding
// whitespace and of one pair of matching quotes. Option names match
// with '-' and '_' alike.
func parseOsloConfig(r io.Reader, key string) (map[string]string, error) {
	values := map[string]string{}
	section := ""
	lastKey := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';':
			continue
		case line[0] == ' ' || line[0] == '\t':
			// A continuation line adds to the previous value.
			if lastKey == key && section != "" {
				values[section] = strings.TrimSpace(values[section] + "\n" + trimmed)
			}
			continue
		case trimmed[0] == '[':
			if !strings.HasSuffix(trimmed, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, trimmed)
			}
			section, lastKey = strings.TrimSpace(trimmed[1:len(trimmed)-1]), ""
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			return nil, fmt.Errorf("line %d: no '=' in %q", n, trimmed)
		}
		lastKey = strings.ReplaceAll(strings.TrimSpace(line[:i]), "-", "_")
		if lastKey != key || section == "" {
			continue
		}
		v := strings.TrimSpace(line[i+1:])
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		values[section] = v
	}
	return values, sc.Err()
}
