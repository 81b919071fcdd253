// Package semaphores is lockfs's lock engine: the lock state of the files
// of one mount, answered with the semantics the Linux kernel gives on
// tmpfs (fs/locks.c), as specified in LOCK-SEMANTICS.md (rules R11–R29).
// It has no FUSE import; the fs package translates FUSE requests into
// calls on an Engine.
//
// Guarantees of the in-memory Table:
//
//   - Owners are opaque 64-bit keys (R4). Each file has two independent
//     spaces (R26): POSIX record locks and OFD locks share one; flock
//     locks live in the other and never conflict with the first.
//   - A request is applied atomically (R14): it either conflicts with an
//     applied lock of another owner and changes nothing, or rewrites the
//     owner's records, merging same-type neighbours and splitting or
//     trimming other-type ones, keeping the kernel's record order (R15),
//     which decides what F_GETLK reports (R16).
//   - Conflicts give EAGAIN (R17). Blocked requests are granted as soon
//     as they fit, in arrival order; waiters never block newcomers (R18).
//   - A blocked wait ends in a grant or, when its context is cancelled,
//     in EINTR with nothing recorded: the choice is made under the file's
//     mutex (R19).
//   - EDEADLK follows posix_locks_deadlock exactly: cycles of up to 12
//     POSIX owners are found, longer ones and flock/OFD waits never (R20).
//   - A flock conversion drops the old lock before trying the new one
//     (R27).
//   - Flush (a close) drops the closing process's POSIX locks on the file
//     (R11); Release (last close of a description) drops its flock and
//     OFD locks (R12). Neither needs a context: they always complete.
//   - Every state change is reported once to the Observer, in order.
//   - Once every owner has closed its files, the table holds nothing.
//   - A file whose only state is one lock (a lock directory's usual
//     case) is held in a compact form, about 160 bytes per lock; the
//     full form is built when a second lock, a waiter or a poller comes,
//     and both forms give the same answers and events (compact.go).
package semaphores
