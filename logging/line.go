package logging

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/lockfs/lockfs/semaphores"
)

// appendAuditLine appends the JSON audit line of ent, newline included,
// to dst: byte for byte the line zerolog writes for
//
//	zl.WithLevel(level).Time("time", e.Time).Str("event", …)…Msg(msg)
//
// (field order, string escaping, number and time formats; the test
// TestAuditLineMatchesZerolog checks it against zerolog itself on random
// events). It exists because building the line through zerolog's Event
// API costs several times more (a field call, a layout parse of the time
// format and a message concatenation per line), and every lock call
// waits for its lines to be written before it is answered.
func appendAuditLine(dst []byte, ent *auditEntry) []byte {
	e := &ent.e
	dst = append(dst, '{')
	dst = appendKey(dst, zerolog.LevelFieldName, true)
	dst = appendJSONString(dst, zerolog.LevelFieldMarshalFunc(eventLevel(e.Kind)))
	dst = appendKey(dst, zerolog.TimestampFieldName, false)
	dst = append(dst, '"')
	dst = e.Time.AppendFormat(dst, zerolog.TimeFieldFormat)
	dst = append(dst, '"')
	dst = appendKey(dst, "event", false)
	dst = appendJSONString(dst, e.Kind.String())
	dst = appendKey(dst, "lock", false)
	dst = appendJSONString(dst, ent.name)
	dst = appendKey(dst, "path", false)
	dst = appendJSONString(dst, ent.path)
	dst = appendKey(dst, "kind", false)
	dst = appendJSONString(dst, e.Class.String())
	dst = appendKey(dst, "mode", false)
	dst = appendJSONString(dst, e.Type.String())
	dst = appendKey(dst, "start", false)
	dst = strconv.AppendUint(dst, e.Start, 10)
	dst = appendKey(dst, "end", false)
	dst = strconv.AppendUint(dst, e.End, 10)
	dst = appendKey(dst, "pid", false)
	dst = strconv.AppendUint(dst, uint64(e.Pid), 10)
	dst = appendKey(dst, "command", false)
	dst = appendJSONString(dst, ent.command)
	dst = appendKey(dst, "uid", false)
	dst = strconv.AppendUint(dst, uint64(e.Uid), 10)
	dst = appendKey(dst, "owner", false)
	dst = appendHexString(dst, e.Owner)
	dst = appendKey(dst, "fh", false)
	dst = strconv.AppendUint(dst, e.Fh, 10)
	var msg string
	switch e.Kind {
	case semaphores.EventWaiting:
		dst = appendBlocker(dst, e)
		msg = "Waiting for file lock"
	case semaphores.EventAcquired:
		dst = appendWaited(dst, e)
		msg = "Got file lock"
	case semaphores.EventReleased:
		dst = appendKey(dst, "held_s", false)
		dst = appendFloat(dst, seconds(e.Held))
		dst = appendKey(dst, "reason", false)
		dst = appendJSONString(dst, e.Reason.String())
		msg = "Released file lock"
	case semaphores.EventInterrupted:
		dst = appendWaited(dst, e)
		msg = "Interrupted wait for file lock"
	case semaphores.EventDeadlock:
		dst = appendBlocker(dst, e)
		msg = "Refused file lock (deadlock)"
	case semaphores.EventGaveUp:
		dst = appendWaited(dst, e)
		msg = "Gave up waiting for file lock"
	}
	// The message is msg + " " + strconv.Quote(name) + " at " + path,
	// JSON-escaped, built in place.
	dst = appendKey(dst, zerolog.MessageFieldName, false)
	dst = append(dst, '"')
	dst = appendJSONStringBody(dst, msg)
	dst = append(dst, ' ')
	dst = appendQuotedName(dst, ent.name)
	dst = append(dst, " at "...)
	dst = appendJSONStringBody(dst, ent.path)
	return append(dst, '"', '}', '\n')
}

// appendQuotedName appends strconv.Quote(name), JSON-escaped. Quote's
// output is valid UTF-8 with every control byte, DEL and invalid byte
// already written as a Go escape, so only its '"' and '\\' need JSON
// escaping.
func appendQuotedName(dst []byte, name string) []byte {
	var buf [96]byte
	for _, b := range strconv.AppendQuote(buf[:0], name) {
		if b == '"' || b == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, b)
	}
	return dst
}

func appendWaited(dst []byte, e *semaphores.Event) []byte {
	dst = appendKey(dst, "waited_s", false)
	dst = appendFloat(dst, seconds(e.Waited))
	dst = appendKey(dst, "attempts", false)
	return strconv.AppendInt(dst, int64(e.Attempts), 10)
}

func appendBlocker(dst []byte, e *semaphores.Event) []byte {
	dst = appendKey(dst, "blocker_pid", false)
	dst = strconv.AppendUint(dst, uint64(e.BlockerPid), 10)
	dst = appendKey(dst, "blocker_owner", false)
	return appendHexString(dst, e.BlockerOwner)
}

// appendKey appends `"key":`, preceded by a comma unless first.
func appendKey(dst []byte, key string, first bool) []byte {
	if !first {
		dst = append(dst, ',')
	}
	dst = appendJSONString(dst, key)
	return append(dst, ':')
}

// appendHex16 appends v as 16 lower-case hex digits.
func appendHex16(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(v>>uint(shift))&0xf])
	}
	return dst
}

// appendHexString appends v as a JSON string of 16 hex digits.
func appendHexString(dst []byte, v uint64) []byte {
	return append(appendHex16(append(dst, '"'), v), '"')
}

// hex formats v as appendHex16 does.
func hex(v uint64) string {
	var b [16]byte
	return string(appendHex16(b[:0], v))
}

// appendFloat formats a float64 as zerolog does with its default
// FloatingPointPrecision (-1): ES6 number formatting, exponent form
// below 1e-6 and from 1e21, and NaN/±Inf as strings.
func appendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(v, -1):
		return append(dst, `"-Inf"`...)
	}
	format := byte('f')
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, v, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// jsonSafe[b] reports whether byte b goes into a JSON string as it is
// under zerolog's rules: printable ASCII (0x20–0x7e) other than '"' and
// '\\'. DEL (0x7f) is escaped, as zerolog does.
var jsonSafe = func() (t [256]bool) {
	for b := 0x20; b <= 0x7e; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendJSONString appends s as a quoted JSON string.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	return append(appendJSONStringBody(dst, s), '"')
}

// appendJSONStringBody appends s escaped as zerolog escapes strings:
// '"' and '\\' backslashed, \b \f \n \r \t by name, other control bytes
// and DEL as \u00XX, valid UTF-8 as it is, and each byte of an invalid
// sequence as \ufffd. (File names may hold any byte but '/' and NUL.)
func appendJSONStringBody(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if jsonSafe[b] {
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			const digits = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', digits[b>>4], digits[b&0xf])
		}
		i++
		start = i
	}
	return append(dst, s[start:]...)
}

// seconds formats d in seconds for the *_s fields.
func seconds(d time.Duration) float64 { return d.Seconds() }
