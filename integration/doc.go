// Package integration holds lockfs's end-to-end tests. They build the
// lockfs command once, mount it in its own process on a temporary
// directory, and drive it from other real processes: helper "actor"
// processes re-executed from the test binary, flock(1) and
// /usr/bin/python3. The differential suite runs every lock scenario on a
// fresh tmpfs and on a fresh lockfs mount and requires the two outcome
// logs to be identical (LOCK-SEMANTICS.md is the specification; its §6
// lists the only tolerated deviations).
//
// The package has no non-test code; see harness_test.go for the mount
// helpers, actor_test.go for the actor protocol and diff_locks_test.go
// for the scenarios.
//
// Environment switches:
//
//	LOCKFS_REQUIRE_FUSE=1       a missing /dev/fuse, fusermount3, mount or
//	                            root privilege fails the tests instead of
//	                            skipping them (set it in CI).
//	LOCKFS_BIN=/path/to/lockfs  test this binary instead of building
//	                            ./cmd/lockfs once per run.
//	LOCKFS_DIFF_AGAINST=tmpfs   run the differential suite tmpfs against
//	                            tmpfs (checks the suite itself is
//	                            deterministic); the default is lockfs.
package integration
