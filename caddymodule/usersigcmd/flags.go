package usersigcmd

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// uintFlag is a decimal unsigned integer flag bounded to [min, max].
// pflag's own integer flags also accept octal and hexadecimal, so that
// "--sdkappid 010" would silently mean 8.
type uintFlag struct {
	value    uint64
	min, max uint64
}

func (f *uintFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < f.min || n > f.max {
		return fmt.Errorf("must be a decimal integer from %d to %d", f.min, f.max)
	}
	f.value = n
	return nil
}

func (f *uintFlag) String() string { return strconv.FormatUint(f.value, 10) }
func (f *uintFlag) Type() string   { return "uint" }

// intFlag is a decimal signed integer flag bounded to [min, max].
type intFlag struct {
	value    int64
	min, max int64
}

func (f *intFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < f.min || n > f.max {
		if f.min == math.MinInt64 && f.max == math.MaxInt64 {
			return fmt.Errorf("must be a decimal 64-bit integer")
		}
		return fmt.Errorf("must be a decimal integer from %d to %d", f.min, f.max)
	}
	f.value = n
	return nil
}

func (f *intFlag) String() string { return strconv.FormatInt(f.value, 10) }
func (f *intFlag) Type() string   { return "int" }

// durationFlag is a Go duration flag ("90s", "5m", "24h") that must not be
// negative.
type durationFlag struct {
	value time.Duration
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("must be a Go duration such as 30s, 5m or 24h, and not negative")
	}
	f.value = d
	return nil
}

func (f *durationFlag) String() string { return f.value.String() }
func (f *durationFlag) Type() string   { return "duration" }

func uintFlagValue(fl caddycmd.Flags, name string) uint64 {
	return fl.Lookup(name).Value.(*uintFlag).value
}

func intFlagValue(fl caddycmd.Flags, name string) int64 {
	return fl.Lookup(name).Value.(*intFlag).value
}

func durationFlagValue(fl caddycmd.Flags, name string) time.Duration {
	return fl.Lookup(name).Value.(*durationFlag).value
}

// requireFlags returns an error naming the first of the flags that was not
// given on the command line.
func requireFlags(fl caddycmd.Flags, names ...string) error {
	for _, name := range names {
		if !fl.Changed(name) {
			return fmt.Errorf("missing --%s (see --help)", name)
		}
	}
	return nil
}

// base64FlagValue decodes the standard base64 (with padding) of a flag.
func base64FlagValue(fl caddycmd.Flags, name string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(fl.String(name))
	if err != nil {
		return nil, fmt.Errorf("invalid --%s: not standard base64 with padding (%v)", name, err)
	}
	return b, nil
}

// timeFlagValue returns the Unix time of a flag, or the current time when
// the flag was not given.
func timeFlagValue(fl caddycmd.Flags, name string) time.Time {
	if !fl.Changed(name) {
		return time.Now()
	}
	return time.Unix(intFlagValue(fl, name), 0)
}
