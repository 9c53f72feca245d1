package caddymodule

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// CodeLockedOut is the error code of a request rejected because of
// repeated failures from its client address or for its UserID. Like
// 70020, it is a code of this gateway, not one of Tencent's.
const CodeLockedOut = 70050

// failLockedOut rejects a request during a lockout. The Retry-After header
// gives the seconds until the client may try again.
var failLockedOut = &failure{http.StatusTooManyRequests, CodeLockedOut, "locked-out", "too many failed attempts, retry later"}

// Default values of the lockout block.
const (
	defaultLockoutMaxFailures = 10
	defaultLockoutWindow      = time.Minute
	defaultLockoutDuration    = 5 * time.Minute
	defaultLockoutTableSize   = 10000
)

// Values of the lockout's by field.
const (
	lockoutByIP     = "ip"
	lockoutByUserID = "userid"
	lockoutByBoth   = "both"
)

// maxLockoutUserIDKey is the longest UserID used as it is in the UserID
// table. A longer one, which only a client's error or an attack produces,
// is stored as its SHA-256, so that an entry stays small.
const maxLockoutUserIDKey = 128

// LockoutConfig sets the failure lockout: after repeated failed
// verifications from one client address, or for one claimed UserID, the
// gateway rejects further requests from that address or for that UserID
// with 429 for a while, without verifying them.
type LockoutConfig struct {
	// The number of failures within window after which requests are
	// rejected. Default: 10.
	MaxFailures int `json:"max_failures,omitempty"`

	// The time over which failures are counted, from the first one.
	// Default: 1m.
	Window caddy.Duration `json:"window,omitempty"`

	// How long requests are rejected once the limit is reached. Default: 5m.
	Duration caddy.Duration `json:"duration,omitempty"`

	// The key that failures are counted by: "ip" (the client address, as
	// Caddy determines it with trusted_proxies), "userid" (the UserID the
	// request claims, per SDKAppID) or "both". Default: "ip".
	By string `json:"by,omitempty"`

	// The number of addresses, and of UserIDs, whose failures are kept.
	// When a table is full, the entry used least recently is dropped,
	// lockout included. Default: 10000.
	TableSize int `json:"table_size,omitempty"`
}

// provision fills in the defaults.
func (c *LockoutConfig) provision() {
	if c.MaxFailures == 0 {
		c.MaxFailures = defaultLockoutMaxFailures
	}
	if c.Window == 0 {
		c.Window = caddy.Duration(defaultLockoutWindow)
	}
	if c.Duration == 0 {
		c.Duration = caddy.Duration(defaultLockoutDuration)
	}
	if c.By == "" {
		c.By = lockoutByIP
	}
	if c.TableSize == 0 {
		c.TableSize = defaultLockoutTableSize
	}
}

// validate rejects negative numbers and an unknown by value. Zero values
// stand for the defaults.
func (c *LockoutConfig) validate() error {
	switch {
	case c.MaxFailures < 0:
		return fmt.Errorf("lockout: max_failures %d is negative", c.MaxFailures)
	case c.Window < 0:
		return fmt.Errorf("lockout: window %s is negative", time.Duration(c.Window))
	case c.Duration < 0:
		return fmt.Errorf("lockout: duration %s is negative", time.Duration(c.Duration))
	case c.TableSize < 0:
		return fmt.Errorf("lockout: table_size %d is negative", c.TableSize)
	}
	switch c.By {
	case "", lockoutByIP, lockoutByUserID, lockoutByBoth:
	default:
		return fmt.Errorf("lockout: by: unknown value %q: expected %s, %s or %s", c.By, lockoutByIP, lockoutByUserID, lockoutByBoth)
	}
	return nil
}

// unmarshalLockout parses the lockout block:
//
//	lockout {
//	    max_failures <number>
//	    window <duration>
//	    duration <duration>
//	    by ip|userid|both
//	    table_size <entries>
//	}
//
// Every line is optional, and an empty block (or none) takes the defaults.
func unmarshalLockout(d *caddyfile.Dispenser) (*LockoutConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(LockoutConfig)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		option := d.Val()
		if seen[option] {
			return nil, d.Errf("lockout: %s: set more than once", option)
		}
		seen[option] = true

		var err error
		switch option {
		case "max_failures":
			c.MaxFailures, err = unmarshalPositive(d, "max_failures")
		case "table_size":
			c.TableSize, err = unmarshalPositive(d, "table_size")
		case "window":
			err = unmarshalDuration(d, &c.Window)
		case "duration":
			err = unmarshalDuration(d, &c.Duration)
		case "by":
			err = unmarshalString(d, &c.By)
			if err == nil && c.By != lockoutByIP && c.By != lockoutByUserID && c.By != lockoutByBoth {
				err = d.Errf("lockout: by: unknown value %q: expected %s, %s or %s", c.By, lockoutByIP, lockoutByUserID, lockoutByBoth)
			}
		default:
			err = d.Errf("lockout: unknown subdirective %q", option)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// unmarshalPositive reads the single argument of the current option as a
// number of at least 1.
func unmarshalPositive(d *caddyfile.Dispenser, option string) (int, error) {
	var text string
	if err := unmarshalString(d, &text); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 {
		return 0, d.Errf("lockout: %s: %q is not a number of at least 1", option, text)
	}
	return n, nil
}

// lockout counts failed verifications by client address and by claimed
// UserID, in two fixed-size LRU tables, and reports which requests to
// reject. A successful verification does not reset a count, so that one
// valid token cannot be used to hide guesses between its own requests.
type lockout struct {
	maxFailures int
	window      int64                         // nanoseconds
	duration    int64                         // nanoseconds
	addresses   *lockoutTable[string]         // nil unless counting by address
	users       *lockoutTable[lockoutUserKey] // nil unless counting by UserID
}

// lockoutUserKey is a claimed UserID of one app. A UserID longer than
// maxLockoutUserIDKey is replaced by its SHA-256 with hashed set.
type lockoutUserKey struct {
	sdkAppID uint64
	userID   string
	hashed   bool
}

// newLockout returns the lockout for a provisioned config.
func newLockout(c *LockoutConfig) (*lockout, error) {
	l := &lockout{
		maxFailures: c.MaxFailures,
		window:      int64(c.Window),
		duration:    int64(c.Duration),
	}
	var err error
	if c.By == lockoutByIP || c.By == lockoutByBoth {
		if l.addresses, err = newLockoutTable[string](c.TableSize); err != nil {
			return nil, err
		}
	}
	if c.By == lockoutByUserID || c.By == lockoutByBoth {
		if l.users, err = newLockoutTable[lockoutUserKey](c.TableSize); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// blocked reports whether a request from ip for userID of app sdkAppID is
// locked out, and for how much longer. An empty ip, a zero sdkAppID or an
// empty userID is not looked up.
func (l *lockout) blocked(ip string, sdkAppID uint64, userID string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return false, 0
	}
	nanos := now.UnixNano()
	var wait int64
	if l.addresses != nil && ip != "" {
		wait = l.addresses.lockedFor(lockoutAddress(ip), nanos)
	}
	if l.users != nil && sdkAppID != 0 && userID != "" {
		wait = max(wait, l.users.lockedFor(newLockoutUserKey(sdkAppID, userID), nanos))
	}
	return wait > 0, time.Duration(wait)
}

// failed counts one failure from ip for userID of app sdkAppID, and
// starts a lockout where it reaches the limit. Failures during a lockout
// are not counted, so a lockout ends on time however often the client
// retries.
func (l *lockout) failed(ip string, sdkAppID uint64, userID string, now time.Time) {
	if l == nil {
		return
	}
	nanos := now.UnixNano()
	if l.addresses != nil && ip != "" && l.addresses.fail(lockoutAddress(ip), nanos, l) {
		countLockout()
	}
	if l.users != nil && sdkAppID != 0 && userID != "" && l.users.fail(newLockoutUserKey(sdkAppID, userID), nanos, l) {
		countLockout()
	}
}

// tableLen returns the number of entries in the address and UserID
// tables.
func (l *lockout) tableLen() (addresses, users int) {
	if l.addresses != nil {
		addresses = l.addresses.len()
	}
	if l.users != nil {
		users = l.users.len()
	}
	return addresses, users
}

// retryAfter returns the value of a Retry-After header for wait: whole
// seconds, rounded up, at least 1.
func retryAfter(wait time.Duration) string {
	seconds := (wait + time.Second - 1) / time.Second
	return strconv.FormatInt(max(int64(seconds), 1), 10)
}

// lockoutAddress returns the key of a client address. An IPv6 address
// counts by its /64 network, because a single host usually has a whole
// /64 and could otherwise change its address on each attempt. An IPv4
// address, the common case, is used as it is, without allocating.
func lockoutAddress(ip string) string {
	if strings.IndexByte(ip, ':') < 0 {
		return ip
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.WithZone("")
	if addr.Is4In6() {
		return addr.Unmap().String()
	}
	prefix, err := addr.Prefix(64)
	if err != nil {
		return ip
	}
	return prefix.String()
}

func newLockoutUserKey(sdkAppID uint64, userID string) lockoutUserKey {
	if len(userID) <= maxLockoutUserIDKey {
		return lockoutUserKey{sdkAppID: sdkAppID, userID: userID}
	}
	sum := sha256.Sum256([]byte(userID))
	return lockoutUserKey{sdkAppID: sdkAppID, userID: string(sum[:]), hashed: true}
}

// lockoutCounter is the state of one address or UserID. Times are Unix
// nanoseconds.
type lockoutCounter struct {
	windowStart int64 // the first failure counted
	failures    int
	lockedUntil int64 // 0 when not locked
}

// lockoutTable is a fixed-size LRU of counters, safe for concurrent use.
type lockoutTable[K comparable] struct {
	mu      sync.RWMutex
	entries *simplelru.LRU[K, lockoutCounter]
}

func newLockoutTable[K comparable](size int) (*lockoutTable[K], error) {
	entries, err := simplelru.NewLRU[K, lockoutCounter](size, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the lockout table: %w", err)
	}
	return &lockoutTable[K]{entries: entries}, nil
}

// lockedFor returns how long key stays locked after now, 0 when it is not.
// It does not change the table, so it takes the read lock only.
func (t *lockoutTable[K]) lockedFor(key K, now int64) int64 {
	t.mu.RLock()
	c, ok := t.entries.Peek(key)
	t.mu.RUnlock()
	if !ok || c.lockedUntil <= now {
		return 0
	}
	return c.lockedUntil - now
}

// fail counts one failure of key and reports whether it started a
// lockout.
func (t *lockoutTable[K]) fail(key K, now int64, l *lockout) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, _ := t.entries.Get(key)
	if c.lockedUntil > now {
		return false
	}
	if c.failures == 0 || now-c.windowStart >= l.window {
		c = lockoutCounter{windowStart: now}
	}
	c.failures++
	started := c.failures >= l.maxFailures
	if started {
		c = lockoutCounter{lockedUntil: now + l.duration}
	}
	t.entries.Add(key, c)
	return started
}

func (t *lockoutTable[K]) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.entries.Len()
}

// countsTowardLockout reports whether a rejection of a request that
// carries a UserSig counts as a failure. Rejections of genuine tokens do
// not count: an expired or revoked token, one issued in the future, and
// every 403 (a genuine token not allowed here). Their holder is not
// guessing, and counting them would lock out a user whose app retries an
// old token before fetching a new one.
func countsTowardLockout(f *failure) bool {
	if f.status == http.StatusForbidden {
		return false
	}
	switch f.result {
	case failExpired.result, failIssuedInFuture.result, failRevoked.result, failLockedOut.result:
		return false
	}
	return true
}

// provisionLockout fills in the defaults of the lockout block and creates
// its tables.
func (g *Gateway) provisionLockout() error {
	if g.Lockout == nil {
		return nil
	}
	// Negative values would make the tables fail with a less clear error
	// than the one Validate gives.
	if err := g.Lockout.validate(); err != nil {
		return err
	}
	g.Lockout.provision()
	l, err := newLockout(g.Lockout)
	if err != nil {
		return err
	}
	g.lockout = l
	return nil
}

// checkLockout reports whether the request is locked out, and for how
// much longer. sdkAppID must be a configured app.
func (g *Gateway) checkLockout(r *http.Request, sdkAppID uint64, userID string, now time.Time) (bool, time.Duration) {
	if g.lockout == nil {
		return false, 0
	}
	return g.lockout.blocked(clientIP(r), sdkAppID, userID, now)
}

// countFailure counts a rejected request toward the lockout of its client
// address and claimed UserID, when the request carries a UserSig (or
// conflicting credentials) and the rejection is not one of a genuine
// token. The UserID is counted only for a configured app.
func (g *Gateway) countFailure(r *http.Request, res *authResult, f *failure, now time.Time) {
	if g.lockout == nil || !countsTowardLockout(f) {
		return
	}
	if res.creds.userSig == "" && f != failConflicting {
		return
	}
	g.lockout.failed(clientIP(r), res.sdkAppID, res.creds.userID, now)
}

// clientIP returns the client address that Caddy determined for r, which
// respects the server's trusted_proxies, or "" when there is none.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}
