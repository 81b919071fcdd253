package spool

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// writerEnv makes the test binary a writer process for the kill tests
// (see TestMain).
const writerEnv = "SPOOL_TEST_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(writerEnv); path != "" {
		os.Exit(runWriter(path))
	}
	os.Exit(m.Run())
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

func openSpool(t *testing.T, path string, capacity int) *Spool {
	t.Helper()
	s, err := Open(path, Options{Capacity: capacity, Open: openAppend})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func line(w, i int) string {
	return fmt.Sprintf("writer %d line %d %s\n", w, i, strings.Repeat("x", i%97))
}

// checkLines requires that the file holds, for each writer, lines 0..n-1
// in order, each once.
func checkLines(t *testing.T, data []byte, writers, n int) {
	t.Helper()
	next := make([]int, writers)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var w, i int
		if _, err := fmt.Sscanf(sc.Text(), "writer %d line %d", &w, &i); err != nil || w < 0 || w >= writers {
			t.Fatalf("bad line %q", sc.Text())
		}
		if i != next[w] || sc.Text()+"\n" != line(w, i) {
			t.Fatalf("writer %d: line %q after %d lines: lost, duplicated, reordered or torn", w, sc.Text(), next[w])
		}
		next[w]++
	}
	for w, got := range next {
		if got != n {
			t.Errorf("writer %d: %d lines in the file, want %d", w, got, n)
		}
	}
}

// TestWriteOrderAndWrap: concurrent writers through a ring far smaller
// than what they write (so it wraps and fills, and writers wait for
// room) get every line into the file once, in each writer's order.
func TestWriteOrderAndWrap(t *testing.T) {
	for _, capacity := range []int{64, 1000, DefaultCapacity} {
		t.Run(strconv.Itoa(capacity), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			s := openSpool(t, path, capacity)
			const writers, each = 4, 500
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						s.Write([]byte(line(w, i)))
					}
				})
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, b, writers, each)
		})
	}
}

// TestWriteLargerThanRing: one Write bigger than the ring goes through in
// pieces, whole and in order.
func TestWriteLargerThanRing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	s := openSpool(t, path, 100)
	var big bytes.Buffer
	for i := range 200 {
		big.WriteString(line(0, i))
	}
	if n, err := s.Write(big.Bytes()); n != big.Len() || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	s.Close()
	if b, _ := os.ReadFile(path); !bytes.Equal(b, big.Bytes()) {
		t.Fatalf("file has %d bytes, want the %d written", len(b), big.Len())
	}
}

// TestFlushedWithinInterval: without Flush or Close, a written line
// reaches the file by itself, also after the flusher has parked.
func TestFlushedWithinInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	s := openSpool(t, path, 0)
	for i, pause := range []time.Duration{0, 2 * parkAfter * FlushInterval} {
		time.Sleep(pause)
		s.Write([]byte(line(0, i)))
		waitFileHas(t, path, line(0, i), 5*time.Second)
	}
}

// TestIdleWriteWritesThrough: once the flusher has parked, a Write's
// bytes are in the file when it returns, and the flusher stays parked;
// a burst of Writes wakes it, and reaches the file too.
func TestIdleWriteWritesThrough(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	s := openSpool(t, path, 0)
	waitParked(t, s)
	for i := range 3 {
		s.Write([]byte(line(0, i)))
		if b, _ := os.ReadFile(path); !bytes.HasSuffix(b, []byte(line(0, i))) {
			t.Fatalf("after Write %d on an idle spool the file ends with %q, want the line just written", i, tail(b))
		}
		if !s.parked.Load() {
			t.Fatalf("Write %d on an idle spool woke the flusher", i)
		}
		time.Sleep(2 * parkAfter * FlushInterval) // idle again: the writes are not traffic
	}
	want, _ := os.ReadFile(path)
	const burst = 100
	for i := range burst {
		s.Write([]byte(line(1, i)))
		want = append(want, line(1, i)...)
	}
	if b := waitFileHas(t, path, line(1, burst-1), 5*time.Second); !bytes.Equal(b, want) {
		t.Fatalf("after the burst the file has %d bytes, want the %d written, in order", len(b), len(want))
	}
}

// TestWriteThroughIsLimited: writeThrough lets maxThroughs Writes
// through within parkAfter intervals, then calls the rest traffic,
// until a quiet interval has passed.
func TestWriteThroughIsLimited(t *testing.T) {
	s := &Spool{}
	interval := int64(FlushInterval)
	at := interval * 1000
	for i := range maxThroughs {
		if !s.writeThrough(at + int64(i)) {
			t.Fatalf("Write %d of a quiet spool is not written through", i)
		}
	}
	for i := range 3 {
		if s.writeThrough(at + interval*int64(i)) {
			t.Fatalf("Write %d past maxThroughs within %d intervals is written through", maxThroughs+i, parkAfter)
		}
	}
	if !s.writeThrough(at + (parkAfter+1)*interval) {
		t.Fatal("after a quiet window, a Write is not written through")
	}
}

func waitParked(t *testing.T, s *Spool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !s.parked.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the flusher of an idle spool did not park within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func tail(b []byte) []byte { return b[max(0, len(b)-80):] }

func waitFileHas(t *testing.T, path, want string, limit time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(want)) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in the file after %v; it has:\n%s", want, limit, b)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReopen: bytes written before Reopen are in the renamed file, bytes
// after it in the new one.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	s := openSpool(t, path, 0)
	s.Write([]byte("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("after\n"))
	s.Close()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "before\n" || string(cur) != "after\n" {
		t.Fatalf("old file %q, new file %q; want %q and %q", old, cur, "before\n", "after\n")
	}
}

// netpollEarly opens a pipe while the package's variables are set up, so
// that in a keeper re-executed from this test binary the runtime's
// netpoller has descriptors open before the keeper starts, as it does in
// lockfs (a keeper that closed them died at its first poll).
var netpollEarly = func() *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	w.Close()
	return r
}()

// TestKeeperHoldsNothingElse: the keeper keeps none of its parent's
// descriptors but the spool's own (a FUSE device it kept open would keep
// a dead lockfs's mount alive), sits in "/", shrugs off SIGTERM and
// SIGINT, and stays up until Close.
func TestKeeperHoldsNothingElse(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil { // inheritable, on purpose
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	pipeLink, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", p[0]))
	if err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, filepath.Join(t.TempDir(), "log"), 0)
	pid := s.KeeperPid()
	// Once the keeper has set itself up, every descriptor past its own
	// three is close-on-exec (the runtime's), and none is the pipe.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		bad := keeperStrayFDs(t, pid, pipeLink)
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keeper holds inherited descriptors %v", bad)
		}
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != KeeperName {
		t.Errorf("keeper's command name %q, want %q", comm, KeeperName)
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != "/" {
		t.Errorf("keeper's cwd %q (%v), want /", cwd, err)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	syscall.Kill(pid, syscall.SIGINT)
	time.Sleep(200 * time.Millisecond)
	if state := procState(pid); state != 'S' && state != 'R' {
		t.Fatalf("keeper in state %q 200 ms after start and SIGTERM/SIGINT, want running", state)
	}
	s.Close()
	select {
	case <-s.keeperDone:
	default:
		t.Fatal("the keeper is still running after Close")
	}
}

// keeperStrayFDs lists the keeper's descriptors that it should not have:
// the inheritable pipe, or any past 4 without close-on-exec.
func keeperStrayFDs(t *testing.T, pid int, pipeLink string) []string {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, e := range entries {
		fd, _ := strconv.Atoi(e.Name())
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if link == pipeLink {
			bad = append(bad, fmt.Sprintf("%d (%s, the parent's pipe)", fd, link))
			continue
		}
		if fd <= keeperPipeFD {
			continue
		}
		info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
		var flags uint64
		for _, l := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				flags, _ = strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			}
		}
		if flags&unix.O_CLOEXEC == 0 {
			bad = append(bad, fmt.Sprintf("%d (%s, not close-on-exec)", fd, link))
		}
	}
	return bad
}

// procState is the state letter of process pid, 0 if it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 {
		return b[i+2]
	}
	return 0
}

// runWriter is the writer process of TestKilledWriterLosesNothing: it
// writes lines through a spool, says how far it got and which pid its
// keeper has, and keeps writing until it is killed.
func runWriter(path string) int {
	s, err := Open(path, Options{Capacity: 4096, Open: openAppend})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("keeper %d\n", s.KeeperPid())
	for i := 0; ; i++ {
		s.Write([]byte(line(0, i)))
		fmt.Printf("wrote %d\n", i) // Write returned: the line must survive
	}
}

// TestKilledWriterLosesNothing: a process killed with SIGKILL while
// writing loses none of the lines whose Write had returned, and
// duplicates none: its keeper appends them and exits.
func TestKilledWriterLosesNothing(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "log")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), writerEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		keeper, last := 0, -1
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "keeper":
				keeper, _ = strconv.Atoi(f[1])
			case len(f) == 2 && f[0] == "wrote":
				last, _ = strconv.Atoi(f[1])
			default:
				t.Fatalf("writer: %s", sc.Text())
			}
			if last == 2000+round*997 {
				cmd.Process.Kill()
				break
			}
		}
		for sc.Scan() {
			fmt.Sscanf(sc.Text(), "wrote %d", &last)
		}
		cmd.Wait()
		if keeper == 0 {
			t.Fatal("the writer never named its keeper")
		}
		waitGone(t, keeper)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		n := bytes.Count(b, []byte("\n"))
		if n < last+1 {
			t.Fatalf("round %d: %d lines in the file, but %d Writes had returned", round, n, last+1)
		}
		checkLines(t, b, 1, n) // in order, none twice, none torn
	}
}

// waitGone waits until process pid has exited (it is not our child: a
// zombie counts as exited).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if state := procState(pid); state == 0 || state == 'Z' || state == 'X' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keeper %d still running 10 s after its writer died", pid)
		}
	}
}

// TestKeeperKilled: when the keeper dies, the spool says so and writes
// every later line before Write returns.
func TestKeeperKilled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	exited := make(chan error, 1)
	s, err := Open(path, Options{Open: openAppend, OnKeeperExit: func(err error) { exited <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("before\n"))
	syscall.Kill(s.KeeperPid(), syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("OnKeeperExit not called")
	}
	if b, _ := os.ReadFile(path); string(b) != "before\n" {
		t.Fatalf("after the keeper died the file has %q, want the line written before", b)
	}
	s.Write([]byte("after\n"))
	if b, _ := os.ReadFile(path); string(b) != "before\nafter\n" {
		t.Fatalf("a Write after the keeper died is not in the file when it returns: %q", b)
	}
}

// TestDrainSkipsWriteInFlight: the keeper does not append again what the
// parent's last write(2) had put in the file before the parent died, and
// appends what it had not.
func TestDrainSkipsWriteInFlight(t *testing.T) {
	for _, landed := range []int{0, 3, 6} { // bytes of the in-flight write already in the file
		path := filepath.Join(t.TempDir(), "log")
		const capacity = 16
		mem := make([]byte, headerSize+capacity)
		set := func(off int, v uint64) { *word(mem, off) = v }
		stream := "0123456789abcdefghij" // bytes 0..19; the ring holds 4..19
		for p := 4; p < len(stream); p++ {
			mem[headerSize+p%capacity] = stream[p]
		}
		// In the file: bytes up to 8 (the tail), then `landed` bytes of
		// the in-flight write [8, 14).
		if err := os.WriteFile(path, []byte("old\n"+stream[:8]+stream[8:8+landed]), 0o640); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		set(offMagic, headerMagic)
		set(offCapacity, capacity)
		set(offHead, 20)
		set(offTail, 8)
		set(offInflightEnd, 14)
		set(offInflightDev, st.Dev)
		set(offInflightIno, st.Ino)
		set(offInflightSize, uint64(st.Size)-uint64(landed))
		if err := drain(mem, path, 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != "old\n"+stream {
			t.Errorf("%d bytes landed: file %q, want %q", landed, b, "old\n"+stream)
		}
	}
}

// BenchmarkWrite is the cost a lock call pays to make a line safe.
func BenchmarkWrite(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "log"), Options{Open: openAppend})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	p := []byte(line(0, 400))
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		s.Write(p)
	}
}

// TestWritesArriveWhole: any sequence of writes, of any size against any
// ring size, with flushes, reopens and idle pauses between them, reaches
// the file byte for byte.
func TestWritesArriveWhole(t *testing.T) {
	dir := t.TempDir()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		path := filepath.Join(dir, fmt.Sprintf("log%d", n))
		capacity := rapid.IntRange(1, 4096).Draw(rt, "capacity")
		s, err := Open(path, Options{Capacity: capacity, Open: openAppend, withoutKeeper: true})
		if err != nil {
			rt.Fatal(err)
		}
		var want bytes.Buffer
		for _, op := range rapid.SliceOfN(rapid.IntRange(0, 9), 1, 40).Draw(rt, "ops") {
			switch op {
			case 0:
				s.Flush()
			case 1:
				time.Sleep(2 * FlushInterval)
			case 2:
				if err := s.Reopen(); err != nil { // the same path: appends go on
					rt.Fatal(err)
				}
			default:
				p := rapid.SliceOfN(rapid.SampledFrom([]byte("ab\n")), 0, 3*capacity).Draw(rt, "p")
				if n, err := s.Write(p); n != len(p) || err != nil {
					rt.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
				}
				want.Write(p)
			}
		}
		if err := s.Close(); err != nil {
			rt.Fatal(err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want.Bytes()) {
			rt.Fatalf("file has %d bytes, want the %d written (capacity %d)", len(got), want.Len(), capacity)
		}
	})
}
