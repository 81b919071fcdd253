package mountinfo

import "testing"

func TestParse(t *testing.T) {
	text := `22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
42 26 0:39 / /tmp/with\040space rw,nosuid,nodev,relatime shared:9 master:1 - fuse.lockfs mem rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
43 42 0:40 / /tmp/with\040space rw,nosuid,nodev,relatime - tmpfs tmpfs rw
garbage line
`
	got := Parse(text)
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3: %+v", len(got), got)
	}
	want := Entry{Device: "0:39", Mountpoint: "/tmp/with space", MountOpts: "rw,nosuid,nodev,relatime", FSType: "fuse.lockfs",
		Source: "mem", SuperOpts: "rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072"}
	if got[1] != want {
		t.Errorf("entry %+v, want %+v", got[1], want)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          "plain",
		`a\040b`:         "a b",
		`tab\011x`:       "tab\tx",
		`back\134slash`:  `back\slash`,
		`short\04`:       `short\04`,
		`not\999octal`:   `not\999octal`,
		`end\040`:        "end ",
		`\040\040twice`:  "  twice",
		`newline\012end`: "newline\nend",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAtFindsRoot(t *testing.T) {
	e, ok, err := At("/")
	if err != nil || !ok || e.Mountpoint != "/" {
		t.Fatalf("At(/) = %+v, %v, %v", e, ok, err)
	}
}
