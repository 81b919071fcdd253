package views

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockfs/lockfs/semaphores"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// testSnapshot is a Tempest-like state: on tempest-availability_zone a
// POSIX writer holds, a blocked F_SETLKW waiter and a fasteners poller
// wait; on test_accounts/a (11 bytes) a read-lock group of two flock
// holders and an OFD lock.
func testSnapshot() (semaphores.Snapshot, map[uint64]FileInfo) {
	holder := semaphores.Lock{Owner: 0xa1, Fh: 1, Class: semaphores.ClassPOSIX, Type: semaphores.WriteLock,
		Start: 0, End: semaphores.OffsetMax, Pid: 100, Uid: 1000, Since: t0.Add(-90 * time.Second)}
	snap := semaphores.Snapshot{
		Taken: t0,
		Files: []semaphores.FileState{
			{ // node 7 sorts after node 3 by path
				Node: 3,
				Locks: []semaphores.Lock{
					{Owner: 0xb1, Fh: 2, Class: semaphores.ClassFlock, Type: semaphores.ReadLock, End: semaphores.OffsetMax,
						Pid: 200, Uid: 0, Since: t0.Add(-5 * time.Second)},
					{Owner: 0xb2, Fh: 3, Class: semaphores.ClassFlock, Type: semaphores.ReadLock, End: semaphores.OffsetMax,
						Pid: 201, Uid: 0, Since: t0.Add(-4 * time.Second)},
					{Owner: 0xc1, Fh: 4, Class: semaphores.ClassOFD, Type: semaphores.WriteLock, Start: 10, End: 19,
						Pid: 300, Uid: 0, Since: t0.Add(-250 * time.Millisecond)},
				},
			},
			{
				Node:  2,
				Locks: []semaphores.Lock{holder},
				Waiters: []semaphores.Waiter{
					{Owner: 0xa2, Fh: 5, Class: semaphores.ClassPOSIX, Type: semaphores.WriteLock, End: semaphores.OffsetMax,
						Pid: 101, Uid: 1000, Since: t0.Add(-3*time.Minute - 4*time.Second), Attempts: 1, Blocked: true, Blocker: &holder},
					{Owner: 0xa3, Fh: 6, Class: semaphores.ClassPOSIX, Type: semaphores.WriteLock, End: semaphores.OffsetMax,
						Pid: 102, Uid: 1001, Since: t0.Add(-1500 * time.Millisecond), Attempts: 31, Blocker: &holder},
				},
			},
		},
	}
	info := map[uint64]FileInfo{
		2: {Name: "tempest-availability_zone", Path: "/mnt/tempest-availability_zone", Inode: 2},
		3: {Name: "a", Path: "/mnt/test_accounts/a", Size: 11, Inode: 3},
	}
	return snap, info
}

func testRows(t *testing.T) []Row {
	t.Helper()
	snap, info := testSnapshot()
	names := map[uint32]string{100: "python3", 101: "lockf-waiter", 102: "python3", 200: "flock", 201: "flock", 300: "ofd holder"}
	return Build(snap, func(n uint64) FileInfo { return info[n] }, func(pid uint32) string { return names[pid] })
}

func TestBuild(t *testing.T) {
	rows := testRows(t)
	want := []Row{
		{Command: "python3", PID: 100, Type: "POSIX", Mode: "WRITE", State: Held, End: semaphores.OffsetMax,
			Path: "/mnt/tempest-availability_zone", Held: 90 * time.Second,
			Lock: "tempest-availability_zone", Owner: 0xa1, UID: 1000, Inode: 2, Since: t0.Add(-90 * time.Second)},
		{Command: "lockf-waiter", PID: 101, Type: "POSIX", Mode: "WRITE", State: Blocked, End: semaphores.OffsetMax,
			Path: "/mnt/tempest-availability_zone", Blocker: 100, Waited: 3*time.Minute + 4*time.Second, Attempts: 1,
			Lock: "tempest-availability_zone", Owner: 0xa2, UID: 1000, Inode: 2, Since: t0.Add(-3*time.Minute - 4*time.Second)},
		{Command: "python3", PID: 102, Type: "POSIX", Mode: "WRITE", State: Polling, End: semaphores.OffsetMax,
			Path: "/mnt/tempest-availability_zone", Blocker: 100, Waited: 1500 * time.Millisecond, Attempts: 31,
			Lock: "tempest-availability_zone", Owner: 0xa3, UID: 1001, Inode: 2, Since: t0.Add(-1500 * time.Millisecond)},
		{Command: "flock", PID: 200, Type: "FLOCK", Size: 11, Mode: "READ", State: Held, End: semaphores.OffsetMax,
			Path: "/mnt/test_accounts/a", Held: 5 * time.Second, Lock: "a", Owner: 0xb1, Inode: 3, Since: t0.Add(-5 * time.Second)},
		{Command: "flock", PID: 201, Type: "FLOCK", Size: 11, Mode: "READ", State: Held, End: semaphores.OffsetMax,
			Path: "/mnt/test_accounts/a", Held: 4 * time.Second, Lock: "a", Owner: 0xb2, Inode: 3, Since: t0.Add(-4 * time.Second)},
		{Command: "ofd holder", PID: 300, Type: "OFDLCK", Size: 11, Mode: "WRITE", State: Held, Start: 10, End: 19,
			Path: "/mnt/test_accounts/a", Held: 250 * time.Millisecond, Lock: "a", Owner: 0xc1, Inode: 3, Since: t0.Add(-250 * time.Millisecond)},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, rows[i], want[i])
		}
	}
	if h, w := Holders(rows), Waiters(rows); len(h) != 4 || len(w) != 2 || w[0].PID != 101 || w[1].PID != 102 {
		t.Errorf("Holders/Waiters split wrong: %d holders, waiters %+v", len(h), w)
	}
}

func TestTable(t *testing.T) {
	got := string(Render(testRows(t), Options{}))
	want := `COMMAND           PID   TYPE SIZE MODE   M START END PATH                           BLOCKER WAITED  HELD ATTEMPTS
python3           100  POSIX      WRITE  0     0   0 /mnt/tempest-availability_zone                1m30s         
lockf-waiter      101  POSIX      WRITE* 0     0   0 /mnt/tempest-availability_zone     100  3m04s              1
python3           102  POSIX      WRITE* 0     0   0 /mnt/tempest-availability_zone     100   1.5s             31
flock             200  FLOCK  11B READ   0     0   0 /mnt/test_accounts/a                           5.0s         
flock             201  FLOCK  11B READ   0     0   0 /mnt/test_accounts/a                           4.0s         
ofd holder        300 OFDLCK  11B WRITE  0    10  19 /mnt/test_accounts/a                          250ms         
`
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestTableOptions(t *testing.T) {
	rows := testRows(t)[:2]
	cols, err := ParseColumns("pid,mode,path", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := string(Render(rows, Options{Columns: cols, NoHeadings: true}))
	want := "  100 WRITE  /mnt/tempest-availability_zone\n  101 WRITE* /mnt/tempest-availability_zone\n"
	if got != want {
		t.Errorf("-n -o pid,mode,path:\n%q\nwant\n%q", got, want)
	}

	// A terminal 30 columns wide: PATH is cut to fit, down to its heading.
	got = string(Render(rows, Options{Columns: cols, Width: 30}))
	want = "  PID MODE   PATH\n  100 WRITE  /mnt/tempest-ava…\n  101 WRITE* /mnt/tempest-ava…\n"
	if got != want {
		t.Errorf("width 30:\n%q\nwant\n%q", got, want)
	}
	got = string(Render(rows, Options{Columns: cols, Width: 5}))
	want = "  PID MODE   PATH\n  100 WRITE  /mn…\n  101 WRITE* /mn…\n"
	if got != want {
		t.Errorf("width 5 (PATH never narrower than its heading):\n%q\nwant\n%q", got, want)
	}
}

func TestRaw(t *testing.T) {
	rows := testRows(t)
	rows[5].Path = `/mnt/a b\c`
	got := string(Render(rows[4:], Options{Raw: true}))
	want := `COMMAND PID TYPE SIZE MODE M START END PATH BLOCKER WAITED HELD ATTEMPTS
flock 201 FLOCK 11B READ 0 0 0 /mnt/test_accounts/a   4.0s 
ofd\x20holder 300 OFDLCK 11B WRITE 0 10 19 /mnt/a\x20b\x5cc   250ms 
`
	if got != want {
		t.Errorf("raw:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSON(t *testing.T) {
	rows := testRows(t)
	got := string(Render(rows[1:2], Options{JSON: true}))
	want := `{
   "locks": [
      {
         "command": "lockf-waiter",
         "pid": 101,
         "type": "POSIX",
         "size": null,
         "mode": "WRITE*",
         "m": false,
         "start": 0,
         "end": 0,
         "path": "/mnt/tempest-availability_zone",
         "blocker": 100,
         "waited": 184.000,
         "held": null,
         "attempts": 1,
         "lock": "tempest-availability_zone",
         "owner": "00000000000000a2",
         "uid": 1000,
         "inode": 2,
         "state": "blocked",
         "since": "2026-11-26T11:56:56.000000Z"
      }
   ]
}
`
	if got != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", got, want)
	}
	if got := string(Render(nil, Options{JSON: true})); got != "{\n   \"locks\": [\n   ]\n}\n" {
		t.Errorf("empty JSON: %q", got)
	}

	// Every listing is valid JSON with lslocks's value types.
	var doc struct {
		Locks []map[string]any `json:"locks"`
	}
	if err := json.Unmarshal(Render(rows, Options{JSON: true}), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if len(doc.Locks) != len(rows) {
		t.Fatalf("%d objects, want %d", len(doc.Locks), len(rows))
	}
	for i, o := range doc.Locks {
		if _, ok := o["m"].(bool); !ok {
			t.Errorf("object %d: m is %T, want bool", i, o["m"])
		}
		for _, k := range []string{"pid", "start", "end"} {
			if _, ok := o[k].(float64); !ok {
				t.Errorf("object %d: %s is %T, want a number", i, k, o[k])
			}
		}
	}
	if doc.Locks[3]["size"] != "11B" || doc.Locks[0]["size"] != nil || doc.Locks[0]["blocker"] != nil {
		t.Errorf("size/blocker values wrong: %v %v %v", doc.Locks[3]["size"], doc.Locks[0]["size"], doc.Locks[0]["blocker"])
	}
}

// TestJSONRoundTrip: `lockfs locks` reads locks.json and renders it
// again; every option must give what rendering the rows directly gives.
func TestJSONRoundTrip(t *testing.T) {
	rows := testRows(t)
	back, err := ParseJSON(bytes.NewReader(Render(rows, Options{JSON: true})))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {Raw: true}, {JSON: true}, {Columns: AllColumns()}, {Columns: FileColumns}} {
		if a, b := string(Render(rows, o)), string(Render(back, o)); a != b {
			t.Errorf("options %+v: after the round trip\n%s\nwant\n%s", o, b, a)
		}
	}
	if _, err := ParseJSON(strings.NewReader(`{"locks":[{"pid":"x"}]}`)); err == nil {
		t.Error("a string pid was accepted")
	}
	if _, err := ParseJSON(strings.NewReader(`{"locks":[{"state":"sleeping"}]}`)); err == nil {
		t.Error("an unknown state was accepted")
	}
	// An lslocks listing reads too: a "*" mode is a blocked waiter.
	ls, err := ParseJSON(strings.NewReader(`{"locks":[{"command":"flock","pid":7,"type":"FLOCK","size":null,` +
		`"mode":"READ*","m":false,"start":0,"end":0,"path":"/tmp/f1","blocker":6}]}`))
	if err != nil || len(ls) != 1 || ls[0].State != Blocked || ls[0].Blocker != 6 || ls[0].End != semaphores.OffsetMax {
		t.Errorf("lslocks JSON: %+v, %v", ls, err)
	}
}

func TestParseColumns(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []Column
		err  bool
	}{
		{list: "PID", want: []Column{ColPID}},
		{list: "command, pid,Blocker", want: []Column{ColCommand, ColPID, ColBlocker}},
		{list: "+LOCK,state", want: append(append([]Column(nil), DefaultColumns...), ColLock, ColState)},
		{list: "+PID", want: DefaultColumns}, // already there: once
		{list: "PID,PID", want: []Column{ColPID}},
		{list: "MAJ:MIN", err: true},
		{list: "PID,", err: true},
		{list: "", err: true},
		{list: "+", err: true},
	} {
		got, err := ParseColumns(tc.list, DefaultColumns)
		if (err != nil) != tc.err {
			t.Errorf("%q: error %v, want error %v", tc.list, err, tc.err)
			continue
		}
		if !tc.err && !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.list, got, tc.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                    "0ms",
		0:                               "0ms",
		999 * time.Microsecond:          "0ms",
		850 * time.Millisecond:          "850ms",
		time.Second:                     "1.0s",
		1999 * time.Millisecond:         "1.9s",
		59999 * time.Millisecond:        "59.9s",
		time.Minute:                     "1m00s",
		4*time.Minute + 5*time.Second:   "4m05s",
		time.Hour - time.Nanosecond:     "59m59s",
		2*time.Hour + 3*time.Minute:     "2h03m",
		24*time.Hour - time.Nanosecond:  "23h59m",
		3*24*time.Hour + 4*time.Hour:    "3d04h",
		400*24*time.Hour + 59*time.Hour: "402d11h",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestHumanSize checks util-linux's size_to_human_string rounding.
func TestHumanSize(t *testing.T) {
	for n, want := range map[uint64]string{
		0:             "0B",
		12:            "12B",
		1023:          "1023B",
		1024:          "1K",
		1100:          "1.1K",
		1536:          "1.5K",
		2047:          "2K",
		4096:          "4K",
		1 << 20:       "1M",
		3<<20 + 1<<19: "3.5M",
		1 << 30:       "1G",
		1 << 62:       "4E",
	} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
		back, err := parseHumanSize(HumanSize(n))
		if err != nil || HumanSize(back) != want {
			t.Errorf("parseHumanSize(%q) = %d, %v", want, back, err)
		}
	}
}

func TestAttrValue(t *testing.T) {
	rows := testRows(t)
	got := AttrValue(rows[:3])
	want := "pid=100 type=POSIX mode=WRITE start=0 end=EOF uid=1000 since=2026-11-26T11:58:30.000000Z command=python3\n" +
		"pid=101 type=POSIX mode=WRITE start=0 end=EOF uid=1000 since=2026-11-26T11:56:56.000000Z state=blocked blocker=100 command=lockf-waiter\n" +
		"pid=102 type=POSIX mode=WRITE start=0 end=EOF uid=1001 since=2026-11-26T11:59:58.500000Z state=polling blocker=100 command=python3"
	if got != want {
		t.Errorf("AttrValue:\n%s\nwant\n%s", got, want)
	}
	if AttrValue(nil) != "" {
		t.Error("no rows should give an empty value")
	}
}

func TestHeldName(t *testing.T) {
	for rel, want := range map[string]string{
		"tempest-availability_zone": "tempest-availability_zone",
		"test_accounts/a.lock":      "test_accounts%2Fa.lock",
		"50%/x":                     "50%25%2Fx",
		"name (deleted)":            "name (deleted)",
	} {
		if got := HeldName(rel); got != want {
			t.Errorf("HeldName(%q) = %q, want %q", rel, got, want)
		}
	}
}
