package fs

import (
	"encoding/binary"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/lockfs/lockfs/semaphores"
)

// rawHarness drives the lock wiring directly, as the kernel would, with
// no mount: requests go to lockRaw over a real go-fuse node bridge.
type rawHarness struct {
	t     testing.TB
	raw   *lockRaw
	table *semaphores.Table
	// files are the open (NodeId, Fh) pairs created by the harness.
	files []handleKey
}

func newRawHarness(t testing.TB, nfiles int) *rawHarness {
	fsys := New(Options{})
	table := semaphores.NewTable(semaphores.Options{})
	bridge := gofs.NewNodeFS(fsys.Root(), &gofs.Options{ExternalNodeID: true, NullPermissions: true})
	h := &rawHarness{t: t, raw: &lockRaw{RawFileSystem: bridge, fsys: fsys, eng: table}, table: table}
	for i := 0; i < nfiles; i++ {
		var out fuse.CreateOut
		in := &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, Flags: syscall.O_RDWR, Mode: 0o644}
		if st := h.raw.Create(nil, in, string(rune('a'+i)), &out); st != fuse.OK {
			t.Fatalf("create: %v", st)
		}
		h.files = append(h.files, handleKey{out.NodeId, out.Fh})
	}
	return h
}

func (h *rawHarness) lk(node, fh, owner uint64, typ uint32, start, end uint64, flags uint32) *fuse.LkIn {
	return &fuse.LkIn{
		InHeader: fuse.InHeader{NodeId: node},
		Fh:       fh, Owner: owner, LkFlags: flags,
		Lk: fuse.FileLock{Start: start, End: end, Typ: typ, Pid: 100},
	}
}

func TestRawRejectsWhatTheKernelNeverSends(t *testing.T) {
	h := newRawHarness(t, 1)
	f := h.files[0]
	const max = semaphores.OffsetMax
	cases := []struct {
		name string
		in   *fuse.LkIn
	}{
		{"start after end", h.lk(f.node, f.fh, 1, syscall.F_WRLCK, 10, 5, 0)},
		{"end beyond OFFSET_MAX", h.lk(f.node, f.fh, 1, syscall.F_WRLCK, 0, max+1, 0)},
		{"type 3", h.lk(f.node, f.fh, 1, 3, 0, max, 0)},
		{"type 0xffffffff", h.lk(f.node, f.fh, 1, 0xffffffff, 0, max, 0)},
		{"unknown lk_flags bit", h.lk(f.node, f.fh, 1, syscall.F_WRLCK, 0, max, 2)},
		{"unknown node", h.lk(9999, f.fh, 1, syscall.F_WRLCK, 0, max, 0)},
		{"root directory", h.lk(fuse.FUSE_ROOT_ID, f.fh, 1, syscall.F_WRLCK, 0, max, 0)},
		{"unknown fh", h.lk(f.node, f.fh+77, 1, syscall.F_WRLCK, 0, max, 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if st := h.raw.SetLk(nil, c.in); st != fuse.EINVAL {
				t.Errorf("SetLk = %v, want EINVAL", st)
			}
			if st := h.raw.SetLkw(nil, c.in); st != fuse.EINVAL {
				t.Errorf("SetLkw = %v, want EINVAL", st)
			}
			var out fuse.LkOut
			if st := h.raw.GetLk(nil, c.in, &out); st != fuse.EINVAL {
				t.Errorf("GetLk = %v, want EINVAL", st)
			}
			if st := h.table.Stats(); st != (semaphores.Stats{}) {
				t.Errorf("state changed: %+v", st)
			}
		})
	}
	// FLUSH and RELEASE for owners and handles never seen change nothing
	// and succeed.
	if st := h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: f.node}, Fh: f.fh, LockOwner: 0xdead}); st != fuse.OK {
		t.Errorf("Flush of unknown owner = %v", st)
	}
	h.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: 4242}, Fh: 99, ReleaseFlags: fuse.FUSE_RELEASE_FLOCK_UNLOCK, LockOwner: 7})
	if st := h.table.Stats(); st != (semaphores.Stats{}) {
		t.Errorf("state changed: %+v", st)
	}
}

func TestRawLockCloseRelease(t *testing.T) {
	h := newRawHarness(t, 2)
	a, b := h.files[0], h.files[1]
	const max = semaphores.OffsetMax
	if st := h.raw.SetLk(nil, h.lk(a.node, a.fh, 1, syscall.F_WRLCK, 0, max, 0)); st != fuse.OK {
		t.Fatalf("lock: %v", st)
	}
	if st := h.raw.SetLk(nil, h.lk(a.node, a.fh, 2, syscall.F_RDLCK, 0, 0, 0)); st != fuse.Status(syscall.EAGAIN) {
		t.Fatalf("conflicting lock: %v, want EAGAIN", st)
	}
	var out fuse.LkOut
	if st := h.raw.GetLk(nil, h.lk(a.node, a.fh, 2, syscall.F_RDLCK, 5, 9, 0), &out); st != fuse.OK ||
		out.Lk.Typ != syscall.F_WRLCK || out.Lk.Start != 0 || out.Lk.End != max || out.Lk.Pid != 100 {
		t.Fatalf("GetLk = %v %+v", st, out.Lk)
	}
	// flock on the other file is independent; close (FLUSH) of file a by
	// owner 1 drops its POSIX lock only.
	if st := h.raw.SetLk(nil, h.lk(b.node, b.fh, 3, syscall.F_WRLCK, 0, max, fuse.FUSE_LK_FLOCK)); st != fuse.OK {
		t.Fatalf("flock: %v", st)
	}
	h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: a.node}, Fh: a.fh, LockOwner: 1})
	if st := h.raw.SetLk(nil, h.lk(a.node, a.fh, 2, syscall.F_WRLCK, 0, max, 0)); st != fuse.OK {
		t.Fatalf("lock after close: %v", st)
	}
	h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: a.node}, Fh: a.fh, LockOwner: 2})
	h.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: b.node}, Fh: b.fh, ReleaseFlags: fuse.FUSE_RELEASE_FLOCK_UNLOCK, LockOwner: 3})
	if st := h.table.Stats(); st != (semaphores.Stats{}) {
		t.Errorf("after close and release: %+v", st)
	}
	// After RELEASE the handle is unknown: a lock through it is refused.
	if st := h.raw.SetLk(nil, h.lk(b.node, b.fh, 3, syscall.F_WRLCK, 0, max, fuse.FUSE_LK_FLOCK)); st != fuse.EINVAL {
		t.Errorf("lock through released handle: %v, want EINVAL", st)
	}
}

// FuzzRawRequests feeds arbitrary lock messages, as they could arrive on
// /dev/fuse, to the wiring: it must never panic, must answer every lock
// request with 0, EAGAIN, EINVAL or EDEADLK (never block: only SETLK is
// fuzzed for requests that could wait), and once every owner has closed
// and every description is released nothing may remain.
func FuzzRawRequests(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 1, 2, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3})
	f.Add([]byte{1, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newRawHarness(t, 3)
		owners := map[uint64]bool{}
		for len(data) >= 25 {
			op, fi, owner, typ := data[0]%4, int(data[1])%(len(h.files)+1), uint64(data[2]%5), uint32(data[3])%5
			start := binary.LittleEndian.Uint64(data[4:12]) >> (data[4] % 64)
			end := binary.LittleEndian.Uint64(data[12:20]) >> (data[12] % 64)
			flags := uint32(data[20] % 3)
			fhDelta := uint64(data[21] % 2)
			data = data[25:]
			node, fh := uint64(4242), uint64(0)
			if fi < len(h.files) {
				node, fh = h.files[fi].node, h.files[fi].fh+fhDelta*5
			}
			owners[owner] = true
			in := h.lk(node, fh, owner, typ, start, end, flags)
			switch op {
			case 0:
				switch st := h.raw.SetLk(nil, in); st {
				case fuse.OK, fuse.EINVAL, fuse.Status(syscall.EAGAIN):
				default:
					t.Fatalf("SetLk(%+v) = %v", in, st)
				}
			case 1:
				var out fuse.LkOut
				switch st := h.raw.GetLk(nil, in, &out); st {
				case fuse.OK:
					if out.Lk.Typ != syscall.F_UNLCK && (out.Lk.Start > out.Lk.End || out.Lk.End > semaphores.OffsetMax) {
						t.Fatalf("GetLk answered an invalid range %+v", out.Lk)
					}
				case fuse.EINVAL:
				default:
					t.Fatalf("GetLk(%+v) = %v", in, st)
				}
			case 2:
				if st := h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh, LockOwner: owner}); st != fuse.OK {
					t.Fatalf("Flush = %v", st)
				}
			case 3:
				// A spurious RELEASE of a handle that is still open in
				// the harness: it must be forgotten, not crash.
				h.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: node}, Fh: fh, ReleaseFlags: flags, LockOwner: owner})
				for i, k := range h.files {
					if k.node == node && k.fh == fh {
						h.files = append(h.files[:i], h.files[i+1:]...)
						break
					}
				}
			}
		}
		for _, k := range h.files {
			for o := range owners {
				h.raw.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: k.node}, Fh: k.fh, LockOwner: o})
				h.raw.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: k.node}, Fh: k.fh, ReleaseFlags: fuse.FUSE_RELEASE_FLOCK_UNLOCK, LockOwner: o})
			}
		}
		if st := h.table.Stats(); st != (semaphores.Stats{}) {
			t.Fatalf("state left after everything was closed: %+v", st)
		}
	})
}
