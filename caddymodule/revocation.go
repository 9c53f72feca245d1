package caddymodule

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// CodeRevoked is the error code of a UserSig issued before a revocation
// time of its user or of its whole app. Like 70020, it is a code of this
// gateway, not one of Tencent's.
const CodeRevoked = 70052

// failRevoked rejects a genuine token that an operator has revoked.
var failRevoked = &failure{http.StatusUnauthorized, CodeRevoked, "revoked", "UserSig has been revoked"}

// Limits of a revocation list.
const (
	defaultRevocationPoll = 2 * time.Second

	// maxRevocationFileSize bounds the file, which is read whole on each
	// change. At about 65 bytes a line it holds some 250,000 entries.
	maxRevocationFileSize = 16 << 20

	// maxRevocationEntries bounds the distinct users and apps of one list,
	// from the file and the admin API together.
	maxRevocationEntries = 1_000_000

	// maxRevocationLine is the longest line read. A UserID fits in a
	// token of at most 8192 characters, so its JSON form, even with every
	// character escaped, is shorter.
	maxRevocationLine = 64 << 10

	// maxRevocationBefore is the largest accepted "before" value, about
	// the year 5138. A larger value is most likely a time in milliseconds.
	maxRevocationBefore = 1e11

	// minAdminTokenLength is the shortest revocation_admin_token accepted.
	minAdminTokenLength = 16
)

// revocationEntry is one line of a revocation file and the body of a POST
// to the admin API: every token of the user (or, without a UserID, of the
// whole app) whose TLS.time is before Before is revoked.
type revocationEntry struct {
	SDKAppID uint64 `json:"sdkappid"`
	UserID   string `json:"userid,omitempty"` // empty: every user of the app
	Before   int64  `json:"before"`           // Unix seconds
}

// parseRevocationEntry reads one entry written as a JSON object. It
// rejects unknown members, a missing sdkappid or before, an empty userid,
// an SDKAppID out of range, a before that is not a positive time in
// seconds, and anything after the object.
func parseRevocationEntry(text []byte) (revocationEntry, error) {
	var raw struct {
		SDKAppID *uint64 `json:"sdkappid"`
		UserID   *string `json:"userid"`
		Before   *int64  `json:"before"`
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return revocationEntry{}, fmt.Errorf("invalid JSON object: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return revocationEntry{}, errors.New("unexpected data after the JSON object")
	}

	switch {
	case raw.SDKAppID == nil:
		return revocationEntry{}, errors.New("missing sdkappid")
	case *raw.SDKAppID == 0 || *raw.SDKAppID > math.MaxUint32:
		return revocationEntry{}, fmt.Errorf("sdkappid %d out of range: must be from 1 to %d", *raw.SDKAppID, uint64(math.MaxUint32))
	case raw.Before == nil:
		return revocationEntry{}, errors.New("missing before: the Unix time in seconds before which tokens are revoked")
	case *raw.Before <= 0:
		return revocationEntry{}, fmt.Errorf("before %d is not a positive Unix time in seconds", *raw.Before)
	case *raw.Before > maxRevocationBefore:
		return revocationEntry{}, fmt.Errorf("before %d is too large: expected Unix seconds, not milliseconds", *raw.Before)
	case raw.UserID != nil && *raw.UserID == "":
		return revocationEntry{}, errors.New("userid is empty: omit it to revoke every user of the app")
	}

	e := revocationEntry{SDKAppID: *raw.SDKAppID, Before: *raw.Before}
	if raw.UserID != nil {
		e.UserID = *raw.UserID
	}
	return e, nil
}

// appUserKey identifies one user of one app.
type appUserKey struct {
	sdkAppID uint64
	userID   string
}

// revocationList is an immutable set of revocations. A new list replaces
// the old one as a whole, so readers need no lock. For each user and each
// app it keeps the latest "before" time given.
type revocationList struct {
	users map[appUserKey]int64
	apps  map[uint64]int64
}

func newRevocationList() *revocationList {
	return &revocationList{users: map[appUserKey]int64{}, apps: map[uint64]int64{}}
}

// revoked reports whether a token of userID in app sdkAppID, issued at
// issuedAt (TLS.time, Unix seconds), is revoked. It costs at most two map
// lookups and does not allocate. A nil list revokes nothing.
func (l *revocationList) revoked(sdkAppID uint64, userID string, issuedAt int64) bool {
	if l == nil {
		return false
	}
	if before, ok := l.apps[sdkAppID]; ok && issuedAt < before {
		return true
	}
	if len(l.users) == 0 {
		return false
	}
	before, ok := l.users[appUserKey{sdkAppID, userID}]
	return ok && issuedAt < before
}

func (l *revocationList) len() int {
	if l == nil {
		return 0
	}
	return len(l.users) + len(l.apps)
}

// add records e in l, which must not be shared yet. It fails when e is a
// new entry and l already holds maxRevocationEntries.
func (l *revocationList) add(e revocationEntry) error {
	if e.UserID == "" {
		before, ok := l.apps[e.SDKAppID]
		if !ok && l.len() >= maxRevocationEntries {
			return errRevocationListFull
		}
		l.apps[e.SDKAppID] = max(before, e.Before)
		return nil
	}
	key := appUserKey{e.SDKAppID, e.UserID}
	before, ok := l.users[key]
	if !ok && l.len() >= maxRevocationEntries {
		return errRevocationListFull
	}
	l.users[key] = max(before, e.Before)
	return nil
}

var errRevocationListFull = fmt.Errorf("revocation list is full: it contains the maximum of %d entries", maxRevocationEntries)

// with returns a copy of l with e added. l is not changed.
func (l *revocationList) with(e revocationEntry) (*revocationList, error) {
	next := &revocationList{users: make(map[appUserKey]int64, len(l.users)+1), apps: make(map[uint64]int64, len(l.apps)+1)}
	for k, v := range l.users {
		next.users[k] = v
	}
	for k, v := range l.apps {
		next.apps[k] = v
	}
	if err := next.add(e); err != nil {
		return nil, err
	}
	return next, nil
}

// entries returns the entries of l in no particular order.
func (l *revocationList) entries() []revocationEntry {
	list := make([]revocationEntry, 0, l.len())
	for id, before := range l.apps {
		list = append(list, revocationEntry{SDKAppID: id, Before: before})
	}
	for key, before := range l.users {
		list = append(list, revocationEntry{SDKAppID: key.sdkAppID, UserID: key.userID, Before: before})
	}
	return list
}

// parseRevocations reads a revocation file: one JSON object per line,
// blank lines and lines starting with '#' ignored. An error names the
// first bad line by its number.
func parseRevocations(r io.Reader) (*revocationList, error) {
	list := newRevocationList()
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 0, 4096), maxRevocationLine)
	number := 0
	for scanner.Scan() {
		number++
		line := bytes.TrimSpace(scanner.Bytes())
		if number == 1 {
			line = bytes.TrimPrefix(line, []byte("\uFEFF")) // a byte order mark left by some editors
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		e, err := parseRevocationEntry(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", number, err)
		}
		if err := list.add(e); err != nil {
			return nil, fmt.Errorf("line %d: %w", number, err)
		}
	}
	if err := scanner.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", number+1, maxRevocationLine)
		}
		return nil, err
	}
	return list, nil
}

// readRevocationFile reads and parses the file at path.
func readRevocationFile(path string) (*revocationList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	content, err := io.ReadAll(io.LimitReader(f, maxRevocationFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(content) > maxRevocationFileSize {
		return nil, fmt.Errorf("larger than the maximum of %d bytes", maxRevocationFileSize)
	}
	return parseRevocations(bytes.NewReader(content))
}

// revocationConfig is the part of the gateway's configuration that sets up
// revocation, with placeholders already replaced.
type revocationConfig struct {
	file       string        // path of the revocation file, "" for none
	poll       time.Duration // the minimum time between two checks of the file
	adminToken string        // bearer token of the admin API, "" to disable it
	apps       []uint64      // the SDKAppIDs the gateway serves
}

// revocations is the revocation state of one gateway: the current list,
// the file it comes from and the admin API token that may add to it.
//
// The file is checked from the request path: the first request after each
// poll interval compares the file's size, modification time and identity
// with those of the last read, and reads it again if one changed. No
// goroutine runs. A file that cannot be read or parsed is reported in the
// log, once per change, and the previous list stays in force.
type revocations struct {
	path      string
	poll      time.Duration
	hasToken  bool
	tokenHash [sha256.Size]byte
	apps      map[uint64]bool
	logger    *zap.Logger

	list     atomic.Pointer[revocationList]
	nextPoll atomic.Int64 // Unix nanoseconds after which the file is checked again

	mu      sync.Mutex  // serializes reading the file and adding entries
	stamp   fs.FileInfo // the file at its last check, nil when it was missing
	lastErr string      // the last error logged, to log a repeated error once
}

// newRevocations builds the revocation state and reads the file once. A
// missing file is an empty list, with a warning, because the admin API
// creates the file on its first POST. A file that exists but cannot be
// read or parsed is an error.
func newRevocations(cfg revocationConfig, logger *zap.Logger) (*revocations, error) {
	rv := &revocations{poll: cfg.poll, logger: logger, apps: make(map[uint64]bool, len(cfg.apps))}
	if rv.poll <= 0 {
		rv.poll = defaultRevocationPoll
	}
	for _, id := range cfg.apps {
		rv.apps[id] = true
	}
	if cfg.adminToken != "" {
		rv.hasToken = true
		rv.tokenHash = sha256.Sum256([]byte(cfg.adminToken))
	}
	rv.list.Store(newRevocationList())

	if cfg.file == "" {
		return rv, nil
	}
	path, err := filepath.Abs(cfg.file)
	if err != nil {
		return nil, fmt.Errorf("revocation_file: %w", err)
	}
	rv.path = path

	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		logger.Warn("revocation file not found: starting with an empty revocation list; the file is created by the first revocation posted to the admin API",
			zap.String("revocation_file", path))
		rv.nextPoll.Store(time.Now().Add(rv.poll).UnixNano())
		return rv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocation_file: %w", err)
	}
	list, err := readRevocationFile(path)
	if err != nil {
		return nil, fmt.Errorf("revocation_file %s: %w", path, err)
	}
	rv.stamp = info
	rv.list.Store(list)
	rv.nextPoll.Store(time.Now().Add(rv.poll).UnixNano())
	logger.Info("revocation file loaded", zap.String("revocation_file", path), zap.Int("entries", list.len()))
	return rv, nil
}

// revoked reports whether a genuine token is revoked, first checking the
// file for changes when a poll interval has passed. A nil rv revokes
// nothing.
func (rv *revocations) revoked(sdkAppID uint64, userID string, issuedAt int64, now time.Time) bool {
	if rv == nil {
		return false
	}
	rv.refresh(now)
	return rv.list.Load().revoked(sdkAppID, userID, issuedAt)
}

// refresh reads the file again if it changed, at most once per poll
// interval. Only the caller that moves the next poll time forward does
// the check, so concurrent requests do not wait for it.
//
// NOTE: that caller waits for the whole read, about half a second for a
// file of maxRevocationFileSize on a 2-core server.
func (rv *revocations) refresh(now time.Time) {
	if rv.path == "" {
		return
	}
	next := rv.nextPoll.Load()
	if now.UnixNano() < next {
		return
	}
	if !rv.nextPoll.CompareAndSwap(next, now.Add(rv.poll).UnixNano()) {
		return
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.reloadLocked()
}

// reloadLocked reads the file if its size, modification time or identity
// changed since the last check. rv.mu must be held.
//
// NOTE: a rewrite that keeps the size goes unnoticed when it falls within
// the resolution of the file system's modification times. ext4, XFS and
// Btrfs keep nanoseconds, but some file systems keep whole seconds.
func (rv *revocations) reloadLocked() {
	info, err := os.Stat(rv.path)
	if errors.Is(err, fs.ErrNotExist) {
		if rv.stamp != nil {
			rv.logger.Warn("revocation file removed: keeping the previous revocation list; empty the file instead to clear it",
				zap.String("revocation_file", rv.path))
		}
		rv.stamp = nil
		return
	}
	if err != nil {
		rv.logOnce("checking the revocation file failed: keeping the previous revocation list", err)
		return
	}
	if rv.stamp != nil && os.SameFile(rv.stamp, info) && rv.stamp.Size() == info.Size() && rv.stamp.ModTime().Equal(info.ModTime()) {
		return
	}

	// The stamp is taken before the read, so if the file changes during
	// the read, the next check finds a newer stamp and reads it again.
	rv.stamp = info
	list, err := readRevocationFile(rv.path)
	if err != nil {
		rv.logOnce("invalid revocation file: keeping the previous revocation list", err)
		return
	}
	rv.lastErr = ""
	rv.list.Store(list)
	rv.logger.Info("revocation file loaded", zap.String("revocation_file", rv.path), zap.Int("entries", list.len()))
}

// logOnce logs err at error level unless it is the error logged last.
func (rv *revocations) logOnce(msg string, err error) {
	if err.Error() == rv.lastErr {
		return
	}
	rv.lastErr = err.Error()
	rv.logger.Error(msg, zap.String("revocation_file", rv.path), zap.Error(err))
}

// add puts e in the list in force. With a file, the caller appends e to
// the file first, so that a read of the file between the two steps
// already has it.
func (rv *revocations) add(e revocationEntry) error {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	next, err := rv.list.Load().with(e)
	if err != nil {
		return err
	}
	rv.list.Store(next)
	return nil
}

// authorized reports, in constant time, whether token is the admin token
// of this gateway. Both sides are hashed first, so the time does not
// depend on the length of either.
func (rv *revocations) authorized(token string) bool {
	if !rv.hasToken {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], rv.tokenHash[:]) == 1
}

// revocationFileMu serializes appends to revocation files by this process.
var revocationFileMu sync.Mutex

// appendRevocation adds e as a line at the end of the file at path,
// creating the file if needed. If the file does not end with a newline, one
// is written first, so that e does not join the last line.
func appendRevocation(path string, e revocationEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')

	revocationFileMu.Lock()
	defer revocationFileMu.Unlock()

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if size := info.Size(); size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			f.Close()
			return err
		}
		if last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if info.Size()+int64(len(line)) > maxRevocationFileSize {
		f.Close()
		return fmt.Errorf("the file would exceed the maximum of %d bytes: remove old entries first", maxRevocationFileSize)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// provisionRevocations replaces placeholders in revocation_file and
// revocation_admin_token, reads the file, and registers a gateway with a
// token with the admin API. It must run last in Provision, so that a
// registered gateway is a provisioned one.
func (g *Gateway) provisionRevocations() error {
	if g.RevocationFile == "" && g.RevocationAdminToken == "" {
		return nil
	}
	repl := caddy.NewReplacer()
	file, err := repl.ReplaceOrErr(g.RevocationFile, true, true)
	if err != nil {
		return fmt.Errorf("revocation_file: replacing placeholders: %w", err)
	}
	token := ""
	if g.RevocationAdminToken != "" {
		token, err = repl.ReplaceOrErr(g.RevocationAdminToken, true, true)
		if err != nil {
			return fmt.Errorf("revocation_admin_token: replacing placeholders: %w", err)
		}
		if len(token) < minAdminTokenLength {
			return fmt.Errorf("revocation_admin_token: %d bytes is shorter than the minimum of %d: use a random token, such as the output of openssl rand -hex 32",
				len(token), minAdminTokenLength)
		}
	}

	apps := make([]uint64, 0, len(g.Apps))
	for _, app := range g.Apps {
		apps = append(apps, app.SDKAppID)
	}
	rv, err := newRevocations(revocationConfig{file: file, poll: time.Duration(g.RevocationPoll), adminToken: token, apps: apps}, g.logger)
	if err != nil {
		return err
	}
	g.revocations = rv
	if rv.hasToken {
		registerRevocations(rv)
	}
	return nil
}

// validateRevocation rejects a negative revocation_poll, and one without
// a revocation_file.
func (g *Gateway) validateRevocation() error {
	if g.RevocationPoll < 0 {
		return fmt.Errorf("revocation_poll: %s is negative", time.Duration(g.RevocationPoll))
	}
	if g.RevocationPoll != 0 && g.RevocationFile == "" {
		return errors.New("revocation_poll: revocation_file is also required")
	}
	return nil
}
