package views

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HumanSize formats a byte count as util-linux does for lslocks's SIZE
// (size_to_human_string with one-letter suffixes): "12B", "4K", "1.5M";
// one decimal, rounded half up, dropped when it is zero.
func HumanSize(bytes uint64) string {
	exp := 0
	for shift := 10; shift <= 60; shift += 10 {
		if bytes < 1<<shift {
			break
		}
		exp = shift
	}
	letter := "BKMGTPE"[exp/10]
	dec := bytes >> exp
	frac := bytes & (1<<exp - 1)
	if frac != 0 {
		// Three digits after the point, then rounded to one.
		if frac >= ^uint64(0)/1000 {
			frac = frac / 1024 * 1000 / (1 << (exp - 10))
		} else {
			frac = frac * 1000 / (1 << exp)
		}
		frac = (frac + 50) / 100
		if frac == 10 {
			dec++
			frac = 0
		}
	}
	if frac != 0 {
		return fmt.Sprintf("%d.%d%c", dec, frac, letter)
	}
	return fmt.Sprintf("%d%c", dec, letter)
}

// parseHumanSize reads HumanSize's output back (to the displayed
// precision), or a plain number of bytes.
func parseHumanSize(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, nil
	}
	i := strings.IndexByte("BKMGTPE", s[len(s)-1])
	if i < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	v, err := strconv.ParseFloat(s[:len(s)-1], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return uint64(v * float64(uint64(1)<<(10*i))), nil
}

// HumanDuration formats a wait or hold time for WAITED and HELD, short
// and truncated (never rounded up): "0ms", "850ms", "1.2s", "59.9s",
// "4m05s", "2h03m", "3d04h".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		tenths := d / (100 * time.Millisecond)
		return fmt.Sprintf("%d.%ds", tenths/10, tenths%10)
	case d < time.Hour:
		s := int64(d / time.Second)
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case d < 24*time.Hour:
		m := int64(d / time.Minute)
		return fmt.Sprintf("%dh%02dm", m/60, m%60)
	}
	h := int64(d / time.Hour)
	return fmt.Sprintf("%dd%02dh", h/24, h%24)
}
