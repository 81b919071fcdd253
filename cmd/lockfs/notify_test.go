package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenNotify plays systemd's side of sd_notify on addr.
func listenNotify(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@lockfs-test-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listenNotify(t, tc.addr)
			t.Setenv("NOTIFY_SOCKET", tc.addr)
			n := takeNotifier()
			if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
				t.Errorf("NOTIFY_SOCKET still set (%q): children would inherit it", v)
			}
			if !n.enabled() {
				t.Fatal("notifier not enabled")
			}
			if err := n.notify("READY=1", "STATUS=Serving /x", "MAINPID=42"); err != nil {
				t.Fatal(err)
			}
			if got, want := readNotify(t, c), "READY=1\nSTATUS=Serving /x\nMAINPID=42\n"; got != want {
				t.Errorf("datagram %q, want %q", got, want)
			}
		})
	}
}

func TestNotifyDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := takeNotifier()
	if n.enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.notify("READY=1"); err != nil {
		t.Fatalf("notify without a socket: %v", err)
	}
	var none *notifier
	if err := none.notify("READY=1"); err != nil {
		t.Fatalf("nil notifier: %v", err)
	}
}

func TestNotifyErrors(t *testing.T) {
	for _, addr := range []string{"vsock:2:1234", filepath.Join(t.TempDir(), "nobody-listens")} {
		if err := (&notifier{addr: addr}).notify("READY=1"); err == nil {
			t.Errorf("notify to %q succeeded", addr)
		}
	}
}
