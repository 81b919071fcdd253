package integration

// BenchmarkLockCycle measures the lock cycles Tempest's clients run, on
// tmpfs and on lockfs mounted in the same run (lockfs served by its own
// process, as always: the benchmark only locks files).
//
//	go test ./integration -run '^$' -bench LockCycle -benchtime 2000x
//
// For each cycle there is one sub-benchmark per directory kind (plain
// ns/op), and an "interleaved" one that alternates the two kinds in
// small chunks, so that both see the same machine conditions, and
// reports tmpfs-ns/op, lockfs-ns/op and their ratio lockfs/tmpfs as
// custom metrics (its own ns/op is the time of one cycle on each). The
// numbers are reported, never asserted.

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchChunk is how many cycles of one kind run back to back in the
// interleaved benchmark: enough that reading the clock costs nothing,
// few enough that both kinds share the same conditions.
const benchChunk = 50

// benchWholeFile is the lock oslo and fasteners take (lockf): whole
// file, from offset 0 to the end.
func benchWholeFile(typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: unix.SEEK_SET, Start: 0, Len: 0}
}

// benchCycle is one kind of lock cycle. prepare sets it up in dir and
// returns the cycle and a cleanup.
type benchCycle struct {
	name    string
	prepare func(b *testing.B, dir string) (cycle func() error, done func())
}

var benchCycles = []benchCycle{
	// (i) F_SETLK F_WRLCK then F_SETLK F_UNLCK on a descriptor that
	// stays open.
	{"lock-unlock", func(b *testing.B, dir string) (func() error, func()) {
		fd, err := unix.Open(filepath.Join(dir, "bench-lock-unlock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0644)
		if err != nil {
			b.Fatal(err)
		}
		lk, un := benchWholeFile(unix.F_WRLCK), benchWholeFile(unix.F_UNLCK)
		return func() error {
			if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, lk); err != nil {
				return err
			}
			return unix.FcntlFlock(uintptr(fd), unix.F_SETLK, un)
		}, func() { unix.Close(fd) }
	}},
	// (ii) The oslo/fasteners cycle: open(path, 'a'), lockf(LOCK_EX|
	// LOCK_NB) = F_SETLK F_WRLCK, lockf(LOCK_UN) = F_SETLKW F_UNLCK (as
	// CPython's fcntl.lockf issues it), close.
	{"open-lock-close", func(b *testing.B, dir string) (func() error, func()) {
		path := filepath.Join(dir, "bench-open-lock-close")
		lk, un := benchWholeFile(unix.F_WRLCK), benchWholeFile(unix.F_UNLCK)
		return func() error {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_CLOEXEC, 0666)
			if err != nil {
				return err
			}
			if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, lk); err != nil {
				unix.Close(fd)
				return err
			}
			if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLKW, un); err != nil {
				unix.Close(fd)
				return err
			}
			return unix.Close(fd)
		}, func() {}
	}},
}

func BenchmarkLockCycle(b *testing.B) {
	kinds := []struct{ name, dir string }{
		{"tmpfs", mountTmpfs(b)},
		{"lockfs", mountLockfs(b).Dir},
	}
	for _, c := range benchCycles {
		b.Run(c.name, func(b *testing.B) {
			for _, k := range kinds {
				b.Run(k.name, func(b *testing.B) {
					cycle, done := c.prepare(b, k.dir)
					defer done()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := cycle(); err != nil {
							b.Fatalf("%s on %s: %v", c.name, k.name, err)
						}
					}
				})
			}
			b.Run("interleaved", func(b *testing.B) {
				cycles := make([]func() error, len(kinds))
				for i, k := range kinds {
					cycle, done := c.prepare(b, k.dir)
					defer done()
					cycles[i] = cycle
				}
				elapsed := make([]time.Duration, len(kinds))
				b.ResetTimer()
				for n, round := 0, 0; n < b.N; round++ {
					chunk := min(benchChunk, b.N-n)
					for j := range kinds {
						k := (j + round) % len(kinds) // alternate which kind goes first
						start := time.Now()
						for i := 0; i < chunk; i++ {
							if err := cycles[k](); err != nil {
								b.Fatalf("%s on %s: %v", c.name, kinds[k].name, err)
							}
						}
						elapsed[k] += time.Since(start)
					}
					n += chunk
				}
				b.StopTimer()
				perOp := make([]float64, len(kinds))
				for k := range kinds {
					perOp[k] = float64(elapsed[k].Nanoseconds()) / float64(b.N)
					b.ReportMetric(perOp[k], kinds[k].name+"-ns/op")
				}
				ratio := perOp[1] / perOp[0]
				b.ReportMetric(ratio, "lockfs/tmpfs")
				b.Logf("%s, N=%d: tmpfs %.0f ns/op, lockfs %.0f ns/op, lockfs/tmpfs %.1f×",
					c.name, b.N, perOp[0], perOp[1], ratio)
			})
		})
	}
}
