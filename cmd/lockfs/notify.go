package main

// The service manager's readiness protocol, sd_notify(3): one datagram
// of newline-separated VARIABLE=value assignments to the AF_UNIX socket
// named by $NOTIFY_SOCKET (a path, or "@name" in the abstract
// namespace). A dozen lines do not justify a dependency.

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// notifier sends state changes to systemd when it started lockfs as a
// Type=notify service; without $NOTIFY_SOCKET it does nothing.
type notifier struct {
	addr string
}

// takeNotifier reads $NOTIFY_SOCKET and removes it from the environment,
// so that no process lockfs starts (fusermount3, the daemon child)
// inherits it: only lockfs speaks for the service.
func takeNotifier() *notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return &notifier{addr: addr}
}

// enabled reports whether a service manager listens.
func (n *notifier) enabled() bool { return n != nil && n.addr != "" }

// notify sends the assignments, e.g. "READY=1", "STATUS=…".
func (n *notifier) notify(assignments ...string) error {
	if !n.enabled() {
		return nil
	}
	if !strings.HasPrefix(n.addr, "/") && !strings.HasPrefix(n.addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET %q: only unix sockets are supported", n.addr)
	}
	// Go maps a leading '@' to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}
