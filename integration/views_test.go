package integration

// The lock views (issue 3): `lockfs locks`, <mnt>/.lockfs/ and the
// user.lockfs.* extended attributes, driven by real processes: a POSIX
// holder and a blocked F_SETLKW waiter (actors), a fasteners poller
// (/usr/bin/python3), an OFD holder (actor), a flock(1) holder and a
// read-lock group (actors). The listings must show exactly those rows,
// and nothing once the processes have exited or been SIGKILLed.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// viewWait bounds every wait for the listing to reach an expected state
// (a waiter to show up, a killed process's locks to go).
const viewWait = 10 * time.Second

// pollerScript is a fasteners poller: it retries F_SETLK every 10-100 ms
// until it gets the lock, holds it until stdin closes, then releases it.
const pollerScript = `
import sys, fasteners
lock = fasteners.InterProcessLock(sys.argv[1])
print('polling', flush=True)
lock.acquire()
print('got', flush=True)
sys.stdin.readline()
lock.release()
print('released', flush=True)
`

// runLocksCmd runs `lockfs locks ARGS…` and returns its stdout, stderr
// and exit status.
func runLocksCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	if lockfsBuildErr != nil {
		t.Fatalf("lockfs binary: %v", lockfsBuildErr)
	}
	cmd := exec.Command(lockfsBin, append([]string{"locks"}, args...)...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("lockfs locks: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(locksCmdLimit):
		// A process reading from a FUSE mount whose server has read
		// the request but does not answer cannot even be killed until
		// it does: only another test's (or another user's) mount can
		// do that to the all-mounts listing.
		return out.String(), errb.String(), locksCmdHung
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("lockfs locks: %v", err)
	}
	return out.String(), errb.String(), code
}

// locksCmdLimit bounds a `lockfs locks` run; locksCmdHung is the exit
// status runLocksCmd reports when it did not end by then.
const (
	locksCmdLimit = 60 * time.Second
	locksCmdHung  = -1
)

// locksJSON runs `lockfs locks -J ARGS…` and returns its objects.
func locksJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, stderr, code := runLocksCmd(t, append([]string{"-J"}, args...)...)
	if code != 0 {
		t.Fatalf("lockfs locks -J %v: exit %d: %s", args, code, stderr)
	}
	return decodeLocks(t, []byte(out))
}

func decodeLocks(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var doc struct {
		Locks []map[string]any `json:"locks"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not lslocks JSON: %v\n%s", err, b)
	}
	return doc.Locks
}

// waitRows polls `lockfs locks -J mnt` until ok accepts the rows.
func waitRows(t *testing.T, mnt, what string, ok func([]map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(viewWait)
	for {
		rows := locksJSON(t, mnt)
		if ok(rows) {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s:\n%s", viewWait, what, dumpRows(rows))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dumpRows(rows []map[string]any) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %v\n", r)
	}
	return b.String()
}

func rowWith(rows []map[string]any, pid int, state string) map[string]any {
	for _, r := range rows {
		if rawInt(r["pid"]) == int64(pid) && r["state"] == state {
			return r
		}
	}
	return nil
}

// comm is the command name lockfs shows for pid.
func comm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatalf("comm of %d: %v", pid, err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// mustDo runs an actor command and requires an answer starting with want.
func mustDo(t *testing.T, a *actor, cmd, want string) string {
	t.Helper()
	r, ok := a.start(cmd).wait(mustFinishWithin)
	if !ok || !strings.HasPrefix(r, want) {
		t.Fatalf("%s: %s => %q (answered: %v), want %q…\n%s", a.name, cmd, r, ok, want, a.stderr)
	}
	return r
}

func killActor(t *testing.T, a *actor) {
	t.Helper()
	syscall.Kill(a.pid, syscall.SIGKILL)
	select {
	case <-a.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("actor %s not reaped after SIGKILL", a.name)
	}
}

func getxattr(t *testing.T, path, name string) (string, error) {
	t.Helper()
	for {
		n, err := unix.Getxattr(path, name, nil)
		if err != nil {
			return "", err
		}
		buf := make([]byte, n)
		m, err := unix.Getxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew between the two calls
		}
		if err != nil {
			return "", err
		}
		return string(buf[:m]), nil
	}
}

func listxattr(t *testing.T, path string) []string {
	t.Helper()
	n, err := unix.Listxattr(path, nil)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	buf := make([]byte, n+256)
	n, err = unix.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

// TestViews: every kind of holder and waiter, created by real
// processes, shows in `lockfs locks -J` with exactly the expected rows,
// in `lockfs locks`, in .lockfs/locks, locks.json and held/, and in the
// extended attributes; all of it empties once the processes have exited
// or been killed.
func TestViews(t *testing.T) {
	requireClients(t, "fasteners")
	flockBin := requireTool(t, "flock")
	m := mountLockfs(t)
	mnt := m.Dir
	const az = "tempest-availability_zone"
	azPath := filepath.Join(mnt, az)
	if err := os.WriteFile(azPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var azBefore unix.Stat_t
	if err := unix.Stat(azPath, &azBefore); err != nil {
		t.Fatal(err)
	}

	// A holds the Tempest lock; B blocks in F_SETLKW behind it.
	beforeA := time.Now()
	a := startActor(t, "holder", mnt, "")
	afd := strings.TrimPrefix(mustDo(t, a, "open "+az+" wo", "OK "), "OK ")
	mustDo(t, a, "setlk "+afd+" WR SET 0 0", "OK")
	afterA := time.Now()
	b := startActor(t, "waiter", mnt, "")
	bfd := strings.TrimPrefix(mustDo(t, b, "open "+az+" wo", "OK "), "OK ")
	bCall := b.start("setlkw " + bfd + " WR SET 0 0")
	waitRows(t, mnt, "showing the blocked waiter", func(rows []map[string]any) bool {
		return rowWith(rows, b.pid, "blocked") != nil
	})
	// P polls with fasteners (F_SETLK every 10-100 ms).
	p := startClient(t, "poller", clientPython, "-c", pollerScript, azPath)
	p.expectLine(t, "polling")
	waitRows(t, mnt, "showing the poller with 2 attempts", func(rows []map[string]any) bool {
		r := rowWith(rows, p.pid(), "polling")
		return r != nil && rawInt(r["attempts"]) >= 2
	})
	// O holds an OFD lock on bytes 0-9 and asks F_OFD_GETLK(F_UNLCK)
	// about it, which tells lockfs the owner is an open file description.
	o := startActor(t, "ofd", mnt, "")
	ofd := strings.TrimPrefix(mustDo(t, o, "open ofd-lock rw", "OK "), "OK ")
	mustDo(t, o, "ofd_setlk "+ofd+" WR SET 0 10", "OK")
	mustDo(t, o, "ofd_getlk "+ofd+" UN SET 0 10", "GETLK WR")
	// F holds an exclusive flock with flock(1) until its stdin closes.
	f := startClient(t, "flock", flockBin, filepath.Join(mnt, "flock-lock"), "-c", "echo locked; exec cat")
	f.expectLine(t, "locked")
	// R1 and R2 share a read lock.
	var readers []*actor
	for i := 1; i <= 2; i++ {
		r := startActor(t, fmt.Sprintf("reader%d", i), mnt, "")
		fd := strings.TrimPrefix(mustDo(t, r, "open rw-lock ro", "OK "), "OK ")
		mustDo(t, r, "setlk "+fd+" RD SET 0 0", "OK")
		readers = append(readers, r)
	}

	// ---- lockfs locks -J: exactly these rows, in this order ----
	actorComm := comm(t, a.pid)
	row := func(command string, pid int, typ, mode string, start, end int, name, state string, blocker int) map[string]any {
		r := map[string]any{
			"command": command, "pid": int64(pid), "type": typ, "size": nil, "mode": mode, "m": false,
			"start": int64(start), "end": int64(end), "path": filepath.Join(mnt, name), "blocker": nil,
			"lock": name, "uid": int64(0), "state": state,
		}
		if blocker != 0 {
			r["blocker"] = int64(blocker)
		}
		return r
	}
	want := []map[string]any{
		row("flock", f.pid(), "FLOCK", "WRITE", 0, 0, "flock-lock", "held", 0),
		row(actorComm, o.pid, "OFDLCK", "WRITE", 0, 9, "ofd-lock", "held", 0),
		row(actorComm, readers[0].pid, "POSIX", "READ", 0, 0, "rw-lock", "held", 0),
		row(actorComm, readers[1].pid, "POSIX", "READ", 0, 0, "rw-lock", "held", 0),
		row(actorComm, a.pid, "POSIX", "WRITE", 0, 0, az, "held", 0),
		row(actorComm, b.pid, "POSIX", "WRITE*", 0, 0, az, "blocked", a.pid),
		row("python3", p.pid(), "POSIX", "WRITE*", 0, 0, az, "polling", a.pid),
	}
	rows := locksJSON(t, mnt)
	checkRows(t, "lockfs locks -J", rows, want)
	keys := []string{"command", "pid", "type", "size", "mode", "m", "start", "end", "path", "blocker",
		"waited", "held", "attempts", "lock", "owner", "uid", "inode", "state", "since"}
	out, _, _ := runLocksCmd(t, "-J", mnt)
	if got := jsonKeyOrder(out); !slices.Equal(got, keys) {
		t.Errorf("JSON keys %v, want lslocks's %v then lockfs's", got, keys)
	}

	// The JSON inside the mount is the same listing.
	b1, err := os.ReadFile(filepath.Join(mnt, ".lockfs", "locks.json"))
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, ".lockfs/locks.json", decodeLocks(t, b1), want)

	// ---- the table ----
	out, stderr, code := runLocksCmd(t, "-n", "-r", "-o", "COMMAND,PID,TYPE,MODE,START,END,PATH,BLOCKER,STATE", mnt)
	if code != 0 {
		t.Fatalf("lockfs locks -r: exit %d: %s", code, stderr)
	}
	var wantLines []string
	for _, w := range want {
		bl := ""
		if w["blocker"] != nil {
			bl = fmt.Sprint(w["blocker"])
		}
		wantLines = append(wantLines, fmt.Sprintf("%s %d %s %s %d %d %s %s %s",
			strings.ReplaceAll(w["command"].(string), " ", `\x20`), w["pid"], w["type"], w["mode"],
			w["start"], w["end"], w["path"], bl, w["state"]))
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, wantLines) {
		t.Errorf("lockfs locks -n -r -o …:\n%s\nwant:\n%s", out, strings.Join(wantLines, "\n"))
	}
	table, _, _ := runLocksCmd(t, mnt)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if h := strings.Fields(lines[0]); !slices.Equal(h, []string{"COMMAND", "PID", "TYPE", "SIZE", "MODE", "M",
		"START", "END", "PATH", "BLOCKER", "WAITED", "HELD", "ATTEMPTS"}) || len(lines) != len(want)+1 {
		t.Errorf("lockfs locks:\n%s", table)
	}
	view, err := os.ReadFile(filepath.Join(mnt, ".lockfs", "locks"))
	if err != nil {
		t.Fatal(err)
	}
	if vl := strings.Split(strings.TrimSuffix(string(view), "\n"), "\n"); vl[0] != lines[0] || len(vl) != len(lines) {
		t.Errorf(".lockfs/locks:\n%s\nwant the table of lockfs locks:\n%s", view, table)
	}
	// Without MOUNTPOINT every lockfs mount is listed, this one too.
	// (Other tests' mounts may be stopped or dead: those are reported
	// on stderr with exit status 1, and the others still listed.)
	all, stderr, code := runLocksCmd(t, "-J")
	if code == locksCmdHung {
		t.Logf("lockfs locks -J (all mounts) did not end within %v: some other lockfs mount on this machine does not answer; not checked", locksCmdLimit)
	} else if (code != 0 && (code != 1 || strings.Contains(stderr, mnt))) || len(filterRows(decodeLocks(t, []byte(all)), mnt)) != len(want) {
		t.Errorf("lockfs locks -J (all mounts), exit %d, lacks this mount's rows:\n%s\n%s", code, all, stderr)
	}
	if out, _, _ := runLocksCmd(t, "-J", "-p", strconv.Itoa(b.pid), mnt); len(decodeLocks(t, []byte(out))) != 1 {
		t.Errorf("lockfs locks -p %d: want only the waiter's row:\n%s", b.pid, out)
	}

	// ---- .lockfs/held ----
	held := filepath.Join(mnt, ".lockfs", "held")
	checkHeld(t, held, []string{"flock-lock", "ofd-lock", "rw-lock", az})
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(held, az), &st); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(st.Mtim.Unix())
	// clockSlack: the wall clock of this machine has been seen to step by
	// ~150µs, between the test's readings and lockfs's.
	const clockSlack = 10 * time.Millisecond
	if st.Uid != 0 || mtime.Before(beforeA.Add(-clockSlack)) || mtime.After(afterA.Add(clockSlack)) {
		t.Errorf("held/%s: uid %d mtime %v, want the holder's uid 0 and the acquisition time in [%v, %v]",
			az, st.Uid, mtime, beforeA, afterA)
	}
	content := readViewFile(t, filepath.Join(held, az))
	cl := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	if len(cl) != 4 || !strings.HasPrefix(cl[0], "COMMAND") {
		t.Fatalf("held/%s: want a heading and 3 lines (holder, blocked waiter, poller):\n%s", az, content)
	}
	for i, w := range []struct {
		pid  int
		mode string
	}{{a.pid, "WRITE"}, {b.pid, "WRITE*"}, {p.pid(), "WRITE*"}} {
		fl := strings.Fields(cl[i+1])
		if len(fl) < 4 || fl[1] != strconv.Itoa(w.pid) || fl[3] != w.mode {
			t.Errorf("held/%s line %d: %q, want pid %d mode %s", az, i+2, cl[i+1], w.pid, w.mode)
		}
	}

	// ---- extended attributes ----
	h, err := getxattr(t, azPath, "user.lockfs.holders")
	if err != nil || !regexp.MustCompile(fmt.Sprintf(`^pid=%d type=POSIX mode=WRITE start=0 end=EOF uid=0 since=\S+ command=%s$`,
		a.pid, regexp.QuoteMeta(actorComm))).MatchString(h) {
		t.Errorf("user.lockfs.holders = %q, %v", h, err)
	}
	wv, err := getxattr(t, azPath, "user.lockfs.waiters")
	wre := regexp.MustCompile(fmt.Sprintf(`^pid=%d type=POSIX mode=WRITE start=0 end=EOF uid=0 since=\S+ state=blocked blocker=%d command=%s\n`+
		`pid=%d type=POSIX mode=WRITE start=0 end=EOF uid=0 since=\S+ state=polling blocker=%d command=python3$`,
		b.pid, a.pid, regexp.QuoteMeta(actorComm), p.pid(), a.pid))
	if err != nil || !wre.MatchString(wv) {
		t.Errorf("user.lockfs.waiters = %q, %v", wv, err)
	}
	if _, err := exec.LookPath("getfattr"); err == nil {
		out, err := exec.Command("getfattr", "-d", azPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf(`user.lockfs.holders="pid=%d `, a.pid)) ||
			!strings.Contains(string(out), fmt.Sprintf(`user.lockfs.waiters="pid=%d `, b.pid)) {
			t.Errorf("getfattr -d %s: %v\n%s", azPath, err, out)
		}
	}
	for _, name := range []string{"user.lockfs.holders", "user.lockfs.waiters", "user.lockfs.other"} {
		if err := unix.Setxattr(azPath, name, []byte("x"), 0); !errors.Is(err, unix.EPERM) {
			t.Errorf("setxattr %s: %v, want EPERM", name, err)
		}
		if err := unix.Removexattr(azPath, name); !errors.Is(err, unix.EPERM) {
			t.Errorf("removexattr %s: %v, want EPERM", name, err)
		}
	}
	if err := unix.Setxattr(azPath, "user.note", []byte("mine"), 0); err != nil {
		t.Errorf("setxattr user.note: %v", err)
	} else if v, err := getxattr(t, azPath, "user.note"); v != "mine" || err != nil {
		t.Errorf("user.note = %q, %v", v, err)
	}
	if names := listxattr(t, azPath); !slices.Contains(names, "user.note") ||
		!slices.Contains(names, "user.lockfs.holders") || !slices.Contains(names, "user.lockfs.waiters") {
		t.Errorf("listxattr: %v", names)
	}
	if err := unix.Removexattr(azPath, "user.note"); err != nil {
		t.Errorf("removexattr user.note: %v", err)
	}

	// The lock file itself: still empty, times as before (locks and
	// views never touch it; the user.note change set ctime).
	var az2 unix.Stat_t
	if err := unix.Stat(azPath, &az2); err != nil {
		t.Fatal(err)
	}
	if az2.Size != 0 || az2.Mtim != azBefore.Mtim {
		t.Errorf("%s: size %d mtime %v, want 0 and %v", az, az2.Size, az2.Mtim, azBefore.Mtim)
	}

	// ---- teardown: exits and SIGKILLs empty everything ----
	killActor(t, b) // the blocked waiter
	if r, ok := bCall.wait(mustFinishWithin); !ok || r != "(exited)" {
		t.Errorf("killed waiter's call: %q %v", r, ok)
	}
	rows = waitRows(t, mnt, "without the killed waiter", func(rows []map[string]any) bool {
		return len(filterPid(rows, b.pid)) == 0
	})
	checkRows(t, "after SIGKILL of the waiter", rows, slices.Delete(slices.Clone(want), 5, 6))

	beforeP := time.Now()
	mustDo(t, a, "exit", "OK") // the holder exits: the poller gets the lock
	p.expectLine(t, "got")
	rows = waitRows(t, mnt, "with the poller holding", func(rows []map[string]any) bool {
		return rowWith(rows, p.pid(), "held") != nil && len(filterPid(rows, a.pid)) == 0
	})
	if err := unix.Stat(filepath.Join(held, az), &st); err != nil || time.Unix(st.Mtim.Unix()).Before(beforeP.Add(-clockSlack)) {
		t.Errorf("held/%s after the handover: mtime %v (err %v), want the new acquisition, after %v",
			az, time.Unix(st.Mtim.Unix()), err, beforeP)
	}
	p.stdin.Close()
	p.expectLine(t, "released")
	p.waitExit(t, clientStepTimeout)
	killActor(t, o)
	syscall.Kill(-f.pid(), syscall.SIGKILL)
	f.waitExit(t, clientStepTimeout)
	mustDo(t, readers[0], "exit", "OK")
	killActor(t, readers[1])
	waitRows(t, mnt, "empty", func(rows []map[string]any) bool { return len(rows) == 0 })

	checkHeld(t, held, nil)
	if _, err := os.Stat(filepath.Join(held, az)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("held/%s after every lock went: %v, want ENOENT", az, err)
	}
	for _, name := range listxattr(t, azPath) {
		if strings.HasPrefix(name, "user.lockfs.") {
			t.Errorf("listxattr still has %s", name)
		}
	}
	if v, err := getxattr(t, azPath, "user.lockfs.holders"); v != "" || err != nil {
		t.Errorf("user.lockfs.holders of a free file = %q, %v; want empty", v, err)
	}
	if v := readViewFile(t, filepath.Join(mnt, ".lockfs", "locks")); strings.Count(v, "\n") != 1 {
		t.Errorf(".lockfs/locks of an idle mount:\n%s", v)
	}
}

// checkRows compares rows with want on want's keys, and checks the types
// of the keys that change with time.
func checkRows(t *testing.T, what string, rows, want []map[string]any) {
	t.Helper()
	if len(rows) != len(want) {
		t.Errorf("%s: %d rows, want %d:\n%s", what, len(rows), len(want), dumpRows(rows))
		return
	}
	for i, w := range want {
		r := rows[i]
		for k, v := range w {
			got := r[k]
			if n, ok := got.(json.Number); ok {
				iv, _ := n.Int64()
				got = iv
			}
			if got != v {
				t.Errorf("%s row %d: %s = %#v, want %#v\n%v", what, i, k, got, v, r)
			}
		}
		waiting := strings.HasSuffix(w["mode"].(string), "*")
		_, waitedNum := r["waited"].(json.Number)
		_, heldNum := r["held"].(json.Number)
		att := rawInt(r["attempts"])
		switch {
		case waiting && (!waitedNum || r["held"] != nil || att < 1):
			t.Errorf("%s row %d: a waiter needs waited, attempts and no held: %v", what, i, r)
		case !waiting && (!heldNum || r["waited"] != nil || r["attempts"] != nil):
			t.Errorf("%s row %d: a holder needs held and no waited/attempts: %v", what, i, r)
		}
		if w["state"] == "blocked" && att != 1 {
			t.Errorf("%s row %d: a blocked waiter that never polled has 1 attempt: %v", what, i, r)
		}
		if s, ok := r["since"].(string); !ok || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s row %d: since %v", what, i, r["since"])
		}
		if o, ok := r["owner"].(string); !ok || len(o) != 16 {
			t.Errorf("%s row %d: owner %v", what, i, r["owner"])
		}
	}
}

// jsonKeyOrder returns the keys of the first object of a listing, in
// order.
func jsonKeyOrder(doc string) []string {
	var keys []string
	for _, m := range regexp.MustCompile(`(?m)^\s+"([a-z:]+)": [^\[]`).FindAllStringSubmatch(doc, -1) {
		if slices.Contains(keys, m[1]) {
			break
		}
		keys = append(keys, m[1])
	}
	return keys
}

func filterRows(rows []map[string]any, mnt string) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		if p, _ := r["path"].(string); strings.HasPrefix(p, mnt+"/") {
			out = append(out, r)
		}
	}
	return out
}

func filterPid(rows []map[string]any, pid int) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		if rawInt(r["pid"]) == int64(pid) {
			out = append(out, r)
		}
	}
	return out
}

// checkHeld requires the held/ listing to be names, and each entry to
// be sized exactly like its content as read through one open file.
func checkHeld(t *testing.T, dir string, names []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ls %s: %v", dir, err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		if info, err := e.Info(); err != nil || info.Mode() != 0o444 {
			t.Errorf("held/%s: mode %v (%v), want -r--r--r--", e.Name(), info.Mode(), err)
		}
	}
	if !slices.Equal(got, names) {
		t.Errorf("ls .lockfs/held = %q, want %q", got, names)
	}
}

// readViewFile reads a view file through one open and checks that
// lseek(SEEK_END) on that open (what tail uses) lands exactly at the end
// of what was read. (fstat(2) does not name the open file to FUSE: it
// reports the size of a fresh rendering, as a stat by path does.)
func readViewFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if end, err := f.Seek(0, 2); err != nil || end != int64(b.Len()) {
		t.Errorf("%s: lseek(SEEK_END) = %d (%v), read %d bytes", path, end, err, b.Len())
	}
	return b.String()
}

// TestViewsSnapshotPerOpen: a view file shows the state at its open,
// whatever happens while it is read, and a new open or stat shows the
// state of that moment (nothing is cached).
func TestViewsSnapshotPerOpen(t *testing.T) {
	m := mountLockfs(t)
	a := startActor(t, "holder", m.Dir, "")
	fd := strings.TrimPrefix(mustDo(t, a, "open lock wo", "OK "), "OK ")
	mustDo(t, a, "setlk "+fd+" WR SET 0 0", "OK")
	locks := filepath.Join(m.Dir, ".lockfs", "locks.json")
	heldEntry := filepath.Join(m.Dir, ".lockfs", "held", "lock")
	if _, err := os.Stat(heldEntry); err != nil {
		t.Fatalf("held/lock while held: %v", err)
	}
	f, err := os.Open(locks)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := make([]byte, 10) // read a little now, the rest after the change
	if _, err := f.Read(first); err != nil {
		t.Fatal(err)
	}
	mustDo(t, a, "setlk "+fd+" UN SET 0 0", "OK")
	// No waiting: the unlock was answered after the engine changed.
	if _, err := os.Stat(heldEntry); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("held/lock right after the unlock: %v, want ENOENT", err)
	}
	if rows := decodeLocks(t, mustRead(t, locks)); len(rows) != 0 {
		t.Errorf("a new open of locks.json shows %d rows after the unlock", len(rows))
	}
	var rest bytes.Buffer
	if _, err := rest.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	old := decodeLocks(t, append(first, rest.Bytes()...))
	if len(old) != 1 || rawInt(old[0]["pid"]) != int64(a.pid) {
		t.Errorf("the open made before the unlock shows %v, want the holder's row", old)
	}
	if end, err := f.Seek(0, 2); err != nil || end != int64(10+rest.Len()) {
		t.Errorf("lseek(SEEK_END) of the old open: %d %v, want its own length %d", end, err, 10+rest.Len())
	}
	// tail reads the end through lseek(SEEK_END).
	if out, err := exec.Command("tail", "-c", "8", locks).Output(); err != nil || string(out) != "\n   ]\n}\n" {
		t.Errorf("tail -c 8 locks.json = %q, %v", out, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestViewsReadOnly: nothing under .lockfs can be changed (EPERM, for
// root, whom the kernel's permission checks let through), .lockfs cannot
// be created, removed, replaced or hidden, and the root does not list it.
func TestViewsReadOnly(t *testing.T) {
	m := mountLockfs(t)
	mnt := m.Dir
	a := startActor(t, "holder", mnt, "")
	fd := strings.TrimPrefix(mustDo(t, a, "open lock wo", "OK "), "OK ")
	mustDo(t, a, "setlk "+fd+" WR SET 0 0", "OK")
	v := filepath.Join(mnt, ".lockfs")
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	for _, c := range []struct {
		op   string
		err  error
		want unix.Errno
	}{
		{"open locks O_WRONLY", openErr(filepath.Join(v, "locks"), unix.O_WRONLY), unix.EPERM},
		{"open locks.json O_RDWR", openErr(filepath.Join(v, "locks.json"), unix.O_RDWR), unix.EPERM},
		{"open held/lock O_WRONLY|O_TRUNC", openErr(filepath.Join(v, "held", "lock"), unix.O_WRONLY|unix.O_TRUNC), unix.EPERM},
		{"create .lockfs/new", openErr(filepath.Join(v, "new"), unix.O_WRONLY|unix.O_CREAT), unix.EPERM},
		{"create .lockfs/held/new", openErr(filepath.Join(v, "held", "new"), unix.O_WRONLY|unix.O_CREAT), unix.EPERM},
		{"mkdir .lockfs/d", unix.Mkdir(filepath.Join(v, "d"), 0o755), unix.EPERM},
		{"mknod .lockfs/n", unix.Mknod(filepath.Join(v, "n"), unix.S_IFIFO|0o644, 0), unix.EPERM},
		{"symlink .lockfs/s", unix.Symlink("x", filepath.Join(v, "s")), unix.EPERM},
		{"link file .lockfs/l", unix.Link(filepath.Join(mnt, "file"), filepath.Join(v, "l")), unix.EPERM},
		{"unlink locks", unix.Unlink(filepath.Join(v, "locks")), unix.EPERM},
		{"unlink held/lock", unix.Unlink(filepath.Join(v, "held", "lock")), unix.EPERM},
		{"rmdir held", unix.Rmdir(filepath.Join(v, "held")), unix.EPERM},
		{"rename locks locks2", unix.Rename(filepath.Join(v, "locks"), filepath.Join(v, "locks2")), unix.EPERM},
		{"rename locks out", unix.Rename(filepath.Join(v, "locks"), filepath.Join(mnt, "out")), unix.EPERM},
		{"rename file in", unix.Rename(filepath.Join(mnt, "file"), filepath.Join(v, "file")), unix.EPERM},
		{"rename held/lock", unix.Rename(filepath.Join(v, "held", "lock"), filepath.Join(v, "held", "x")), unix.EPERM},
		{"chmod locks", unix.Chmod(filepath.Join(v, "locks"), 0o666), unix.EPERM},
		{"chmod .lockfs", unix.Chmod(v, 0o777), unix.EPERM},
		{"chown held/lock", unix.Chown(filepath.Join(v, "held", "lock"), 1, 1), unix.EPERM},
		{"truncate locks", unix.Truncate(filepath.Join(v, "locks"), 0), unix.EPERM},
		{"utimes locks", unix.UtimesNano(filepath.Join(v, "locks"), ts), unix.EPERM},
		{"setxattr locks", unix.Setxattr(filepath.Join(v, "locks"), "user.k", []byte("v"), 0), unix.EPERM},
		{"setxattr .lockfs", unix.Setxattr(v, "user.k", []byte("v"), 0), unix.EPERM},
		// At the root: the name is taken, and cannot be removed or moved.
		{"mkdir .lockfs", unix.Mkdir(v, 0o755), unix.EEXIST},
		{"create .lockfs", openErr(v, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL), unix.EEXIST},
		{"symlink .lockfs", unix.Symlink("x", v), unix.EEXIST},
		{"link file .lockfs", unix.Link(filepath.Join(mnt, "file"), v), unix.EEXIST},
		{"rmdir .lockfs", unix.Rmdir(v), unix.EPERM},
		{"rename .lockfs hidden", unix.Rename(v, filepath.Join(mnt, "hidden")), unix.EPERM},
		{"rename dir .lockfs", unix.Rename(filepath.Join(mnt, "dir"), v), unix.EPERM},
		{"exchange dir .lockfs", unix.Renameat2(unix.AT_FDCWD, filepath.Join(mnt, "dir"), unix.AT_FDCWD, v, unix.RENAME_EXCHANGE), unix.EPERM},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.op, c.err, c.want)
		}
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"dir", "file", "lock"}) {
		t.Errorf("root lists %q, want the user's entries only", names)
	}
	if fi, err := os.Stat(v); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o555 {
		t.Errorf(".lockfs: %v %v, want dr-xr-xr-x", fi, err)
	}
	checkHeld(t, filepath.Join(v, "held"), []string{"lock"})
	if fi, err := os.Stat(filepath.Join(mnt, "lock")); err != nil || fi.Size() != 0 {
		t.Errorf("the lock file: %v %v, want size 0", fi, err)
	}
}

func openErr(path string, flags int) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// TestLocksNotLockfs: `lockfs locks` on what is not a lockfs mount
// point says so and exits 1; a bad column is a usage error (2).
func TestLocksNotLockfs(t *testing.T) {
	m := mountLockfs(t)
	if err := os.Mkdir(filepath.Join(m.Dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"/proc"}, 1, "/proc is not a lockfs mount: /proc is a proc mount"},
		{[]string{t.TempDir()}, 1, "is not a lockfs mount: nothing is mounted on"},
		{[]string{filepath.Join(m.Dir, "sub")}, 1, "(it is inside the lockfs mount " + m.Dir + ")"},
		{[]string{"/nonexistent/dir"}, 1, "is not a lockfs mount"},
		{[]string{m.Dir, "/proc"}, 1, "/proc is not a lockfs mount"},
		{[]string{"-o", "PID,NOPE", m.Dir}, 2, `unknown column: "NOPE"`},
	} {
		out, stderr, code := runLocksCmd(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) || out != "" {
			t.Errorf("lockfs locks %q: exit %d, stdout %q, stderr %q; want exit %d and %q",
				c.args, code, out, stderr, c.code, c.msg)
		}
	}
	if out, stderr, code := runLocksCmd(t, m.Dir); code != 0 || !strings.HasPrefix(out, "COMMAND ") {
		t.Errorf("lockfs locks %s: exit %d: %q %q", m.Dir, code, out, stderr)
	}
}
