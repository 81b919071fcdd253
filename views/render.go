package views

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lockfs/lockfs/semaphores"
)

// Options select what Write prints, as lslocks's options do.
type Options struct {
	// Columns to print; nil means DefaultColumns (DefaultJSONColumns
	// with JSON).
	Columns []Column
	// JSON prints {"locks":[…]} (-J): one object per row, keys the
	// lower-case column names.
	JSON bool
	// Raw prints cells separated by one space, unaligned, with blanks
	// and control characters escaped as \xHH (-r).
	Raw bool
	// NoHeadings leaves out the heading line (-n).
	NoHeadings bool
	// Width is the terminal width: a table wider than it gets its PATH
	// cells truncated. 0 never truncates (output to a pipe or a file,
	// or -u).
	Width int
}

func (o *Options) columns() []Column {
	switch {
	case o.Columns != nil:
		return o.Columns
	case o.JSON:
		return DefaultJSONColumns
	}
	return DefaultColumns
}

// Write renders rows to w.
func Write(w io.Writer, rows []Row, o Options) error {
	bw := bufio.NewWriter(w)
	switch {
	case o.JSON:
		writeJSON(bw, rows, o.columns())
	case o.Raw:
		writeRaw(bw, rows, o.columns(), !o.NoHeadings)
	default:
		writeTable(bw, rows, o.columns(), !o.NoHeadings, o.Width)
	}
	return bw.Flush()
}

// Render is Write into a byte slice.
func Render(rows []Row, o Options) []byte {
	var b bytes.Buffer
	_ = Write(&b, rows, o) // a bytes.Buffer does not fail
	return b.Bytes()
}

func writeTable(w *bufio.Writer, rows []Row, cols []Column, head bool, termWidth int) {
	cells := make([][]string, 0, len(rows)+1)
	if head {
		h := make([]string, len(cols))
		for i, c := range cols {
			h[i] = c.Name()
		}
		cells = append(cells, h)
	}
	for i := range rows {
		line := make([]string, len(cols))
		for j, c := range cols {
			line[j] = rows[i].cell(c)
		}
		cells = append(cells, line)
	}
	if len(cells) == 0 {
		return
	}
	widths := make([]int, len(cols))
	for j, c := range cols {
		widths[j] = max(columns[c].min, utf8.RuneCountInString(c.Name()))
		for _, line := range cells {
			widths[j] = max(widths[j], utf8.RuneCountInString(line[j]))
		}
	}
	if termWidth > 0 {
		fitWidth(cols, widths, termWidth)
	}
	for _, line := range cells {
		for j, c := range cols {
			s := truncate(line[j], widths[j])
			pad := strings.Repeat(" ", widths[j]-utf8.RuneCountInString(s))
			if j > 0 {
				w.WriteByte(' ')
			}
			switch {
			case columns[c].right:
				w.WriteString(pad)
				w.WriteString(s)
			case j == len(cols)-1:
				w.WriteString(s) // no trailing blanks
			default:
				w.WriteString(s)
				w.WriteString(pad)
			}
		}
		w.WriteByte('\n')
	}
}

// fitWidth narrows the truncatable columns (PATH) so that a line fits
// termWidth, down to their heading's width.
func fitWidth(cols []Column, widths []int, termWidth int) {
	total := len(cols) - 1
	for _, wd := range widths {
		total += wd
	}
	for j, c := range cols {
		if total <= termWidth {
			return
		}
		if !columns[c].trunc {
			continue
		}
		floor := utf8.RuneCountInString(c.Name())
		cut := min(total-termWidth, widths[j]-floor)
		if cut > 0 {
			widths[j] -= cut
			total -= cut
		}
	}
}

// truncate cuts s to width runes, marking the cut with "…".
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 1 {
		return string([]rune(s)[:width])
	}
	return string([]rune(s)[:width-1]) + "…"
}

func writeRaw(w *bufio.Writer, rows []Row, cols []Column, head bool) {
	if head {
		for j, c := range cols {
			if j > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(c.Name())
		}
		w.WriteByte('\n')
	}
	for i := range rows {
		for j, c := range cols {
			if j > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(escapeRaw(rows[i].cell(c)))
		}
		w.WriteByte('\n')
	}
}

// escapeRaw escapes what would break a space-separated line, as
// libsmartcols's raw mode does: blanks, control characters and the
// backslash become \xHH.
func escapeRaw(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// writeJSON prints the lslocks -J layout (libsmartcols's: three-space
// indents, "},{" between objects), so that tools reading lslocks's JSON
// read lockfs's too.
func writeJSON(w *bufio.Writer, rows []Row, cols []Column) {
	w.WriteString("{\n   \"locks\": [\n")
	for i := range rows {
		if i == 0 {
			w.WriteString("      {\n")
		} else {
			w.WriteString("      },{\n")
		}
		for j, c := range cols {
			w.WriteString("         ")
			w.WriteString(jsonString(c.key()))
			w.WriteString(": ")
			w.WriteString(rows[i].jsonValue(c))
			if j < len(cols)-1 {
				w.WriteByte(',')
			}
			w.WriteByte('\n')
		}
	}
	if len(rows) > 0 {
		w.WriteString("      }\n")
	}
	w.WriteString("   ]\n}\n")
}

// jsonValue is a column's JSON value: numbers for numbers, null for an
// empty cell, "m" false, SIZE as lslocks prints it (null or "12B");
// WAITED and HELD in seconds.
func (r *Row) jsonValue(c Column) string {
	switch c {
	case ColPID:
		return strconv.FormatInt(r.PID, 10)
	case ColSize:
		if r.Size == 0 {
			return "null"
		}
		return jsonString(HumanSize(r.Size))
	case ColM:
		return "false"
	case ColStart:
		return strconv.FormatUint(r.Start, 10)
	case ColEnd:
		return strconv.FormatUint(r.end(), 10)
	case ColBlocker:
		if r.Blocker == 0 {
			return "null"
		}
		return strconv.FormatInt(r.Blocker, 10)
	case ColWaited:
		if !r.State.Waiting() {
			return "null"
		}
		return seconds(r.Waited)
	case ColHeld:
		if r.State.Waiting() {
			return "null"
		}
		return seconds(r.Held)
	case ColAttempts:
		if !r.State.Waiting() {
			return "null"
		}
		return strconv.Itoa(r.Attempts)
	case ColUID:
		return strconv.FormatUint(uint64(r.UID), 10)
	case ColInode:
		return strconv.FormatUint(r.Inode, 10)
	case ColSince:
		if r.Since.IsZero() {
			return "null"
		}
	}
	return jsonString(r.cell(c))
}

// seconds formats d in seconds with millisecond precision.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(math.Floor(d.Seconds()*1000)/1000, 'f', 3, 64)
}

func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // strings always encode
	return strings.TrimSuffix(b.String(), "\n")
}

// ParseJSON reads what Write prints with JSON (a lockfs mount's
// .lockfs/locks.json) back into rows. Keys it does not know are ignored
// and missing keys leave fields zero, so it reads listings of older and
// newer lockfs versions. SIZE is read back to the precision it was
// printed with.
func ParseJSON(r io.Reader) ([]Row, error) {
	var doc struct {
		Locks []map[string]json.RawMessage `json:"locks"`
	}
	dec := json.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("lock listing: %w", err)
	}
	rows := make([]Row, 0, len(doc.Locks))
	for i, obj := range doc.Locks {
		var row Row
		if err := row.fromJSON(obj); err != nil {
			return nil, fmt.Errorf("lock listing, entry %d: %w", i, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (r *Row) fromJSON(obj map[string]json.RawMessage) error {
	var err error
	str := func(key string) string {
		var s *string
		if v, ok := obj[key]; ok && err == nil {
			if e := json.Unmarshal(v, &s); e != nil {
				err = fmt.Errorf("%s: %w", key, e)
			}
		}
		if s == nil {
			return ""
		}
		return *s
	}
	num := func(key string) json.Number {
		var n *json.Number
		if v, ok := obj[key]; ok && err == nil {
			if e := json.Unmarshal(v, &n); e != nil {
				err = fmt.Errorf("%s: %w", key, e)
			}
		}
		if n == nil {
			return ""
		}
		return *n
	}
	integer := func(key string) int64 {
		n := num(key)
		if n == "" || err != nil {
			return 0
		}
		v, e := strconv.ParseInt(string(n), 10, 64)
		if e != nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return v
	}
	unsigned := func(key string) uint64 {
		n := num(key)
		if n == "" || err != nil {
			return 0
		}
		v, e := strconv.ParseUint(string(n), 10, 64)
		if e != nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return v
	}
	duration := func(key string) time.Duration {
		n := num(key)
		if n == "" || err != nil {
			return 0
		}
		v, e := n.Float64()
		if e != nil {
			err = fmt.Errorf("%s: %w", key, e)
		}
		return time.Duration(math.Round(v*1000)) * time.Millisecond
	}

	r.Command = str("command")
	r.PID = integer("pid")
	r.Type = str("type")
	if s := str("size"); s != "" {
		r.Size, err = parseHumanSize(s)
	}
	mode := str("mode")
	r.Mode = strings.TrimSuffix(mode, "*")
	r.Start = unsigned("start")
	r.End = unsigned("end")
	if r.End == 0 {
		r.End = semaphores.OffsetMax // lslocks's 0 (a one-byte lock at 0 reads as EOF)
	}
	r.Path = str("path")
	r.Blocker = integer("blocker")
	r.Waited = duration("waited")
	r.Held = duration("held")
	r.Attempts = int(integer("attempts"))
	r.Lock = str("lock")
	if o := str("owner"); o != "" && err == nil {
		if r.Owner, err = strconv.ParseUint(o, 16, 64); err != nil {
			err = fmt.Errorf("owner: %w", err)
		}
	}
	r.UID = uint32(unsigned("uid"))
	r.Inode = unsigned("inode")
	if s := str("state"); s != "" {
		st, ok := parseState(s)
		if !ok && err == nil {
			err = fmt.Errorf("state: unknown %q", s)
		}
		r.State = st
	} else if strings.HasSuffix(mode, "*") {
		r.State = Blocked // an lslocks listing
	}
	if s := str("since"); s != "" && err == nil {
		if r.Since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			err = fmt.Errorf("since: %w", err)
		}
	}
	return err
}
