package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeValue is a flag.Value for byte sizes written with binary or decimal
// units: "5368709120", "64MiB", "5GiB", "10MB", "4k".
type sizeValue struct{ p *int64 }

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": KiB, "kb": 1000, "kib": KiB,
	"m": MiB, "mb": 1000 * 1000, "mib": MiB,
	"g": GiB, "gb": 1000 * 1000 * 1000, "gib": GiB,
	"t": TiB, "tb": 1000 * 1000 * 1000 * 1000, "tib": TiB,
}

// ParseSize parses a byte size such as "64MiB", "5GiB", "1.5GB" or "1024".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%q is not a size; write e.g. 64MiB, 5GiB or a number of bytes", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size; write e.g. 64MiB, 5GiB or a number of bytes", s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// FormatSize writes n in the largest binary unit that divides it evenly.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

func (v sizeValue) String() string {
	if v.p == nil {
		return ""
	}
	return FormatSize(*v.p)
}

func (v sizeValue) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// listValue is a flag.Value for comma-separated lists. Repeating the flag
// appends; the first Set replaces the default.
type listValue struct {
	p       *[]string
	touched bool
}

func (v *listValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v *listValue) Set(s string) error {
	if !v.touched {
		*v.p = nil
		v.touched = true
	}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*v.p = append(*v.p, item)
		}
	}
	return nil
}

// durationValue is a flag.Value for Go durations ("25s", "1h30m") whose
// errors say what to write and which leaves the value alone on error.
type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration; write e.g. 25s, 5m or 1h30m", s)
	}
	*v.p = d
	return nil
}
