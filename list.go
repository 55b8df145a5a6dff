package wasmwiz

import "strconv"

// Bounds of a list (runs, modules, keys, users): what one page may make the
// store read. A page at offset n reads and skips n rows before its own, and
// a total counts the matching rows; both grow with what a caller keeps, and
// a caller asks for a page at will.
const (
	// MaxListOffset is the largest offset a list takes (EINVALID past it).
	// Rows further down are reached by narrowing the filter instead (runs:
	// until the created_at of the last run seen).
	MaxListOffset = 10_000
	// MaxListTotal is the most matching rows a list's total counts
	// (ListTotal): past it the total says only "more".
	MaxListTotal = 10_000
	// DefaultListLimit is a page's size when the filter names none (a
	// limit of 0 or less); MaxListLimit is the largest a page is.
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ListLimit returns the page size a store reads for a filter's limit:
// DefaultListLimit for 0 or less, at most MaxListLimit. No list reads
// all of a caller's rows at once.
func ListLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// CheckListOffset returns EINVALID for a list offset below 0 or past
// MaxListOffset.
func CheckListOffset(offset int) error {
	if offset < 0 || offset > MaxListOffset {
		return Errorf(EINVALID, "offset %d is out of range: a list's offset is from 0 to %d; for rows further down, narrow the filter (runs: until, the created_at of the last one seen)",
			offset, MaxListOffset)
	}
	return nil
}

// ListTotal is how many rows a list's filter matches, counted up to
// MaxListTotal.
type ListTotal struct {
	Count  int  // the matching rows, at most MaxListTotal
	Capped bool // more than MaxListTotal rows match; Count is MaxListTotal
}

// CountedTotal returns the ListTotal of n matching rows: the stores count
// at most MaxListTotal+1, and n past MaxListTotal is Capped.
func CountedTotal(n int) ListTotal {
	if n > MaxListTotal {
		return ListTotal{Count: MaxListTotal, Capped: true}
	}
	return ListTotal{Count: max(n, 0)}
}

// String returns Count, followed by "+" when Capped ("10000+").
func (t ListTotal) String() string {
	s := strconv.Itoa(t.Count)
	if t.Capped {
		s += "+"
	}
	return s
}
