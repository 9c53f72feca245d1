package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// The default values keep go test ./... short. Long runs:
//
//	go test ./caddymodule -run '^TestLoadWithFaults$' -soak-duration=60s -v
//	go test ./caddymodule -run '^TestReloadKeySetsUnderLoad$' -reloads=100 -v
var (
	soakDuration = flag.Duration("soak-duration", 3*time.Second, "how long TestLoadWithFaults sends requests")
	reloadCount  = flag.Int("reloads", 10, "number of config reloads in TestReloadKeySetsUnderLoad")
)

// The kinds of request of the load test, passed to the backend in the
// verdict query parameter, which the gateway forwards unchanged.
const (
	verdictGenuine   = "genuine"
	verdictExpired   = "expired"
	verdictForged    = "forged"
	verdictWrongUser = "wrong-user"
	verdictWrongApp  = "wrong-app"
	verdictMalformed = "malformed"
)

// loadRequest is one prepared request of the load test and its expected
// response.
type loadRequest struct {
	verdict string
	target  string // path and query
	status  int
	code    int // Tencent error code of a rejection
}

// taggedBackend counts the requests it receives by their verdict
// parameter, and checks that each carries the identity it claims and no
// UserSig.
type taggedBackend struct {
	srv *httptest.Server

	mu       sync.Mutex
	verdicts map[string]int
	problems int
	first    string
}

func newTaggedBackend(t *testing.T) *taggedBackend {
	b := &taggedBackend{verdicts: make(map[string]int)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query := r.URL.Query()
		problem := ""
		switch {
		case query.Has("usersig"):
			problem = "the UserSig reached the backend"
		case r.Header.Get("X-UserSig-UserID") != query.Get("identifier"):
			problem = fmt.Sprintf("X-UserSig-UserID %q for identifier %q", r.Header.Get("X-UserSig-UserID"), query.Get("identifier"))
		}
		b.mu.Lock()
		b.verdicts[query.Get("verdict")]++
		if problem != "" {
			b.problems++
			if b.first == "" {
				b.first = problem
			}
		}
		b.mu.Unlock()
		_, _ = io.WriteString(w, "backend")
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// counts returns a copy of the counts by verdict, the number of requests
// with a problem and the first problem.
func (b *taggedBackend) counts() (map[string]int, int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	verdicts := make(map[string]int, len(b.verdicts))
	for k, v := range b.verdicts {
		verdicts[k] = v
	}
	return verdicts, b.problems, b.first
}

// startTaggedCaddy starts Caddy at debug level for site in front of a
// taggedBackend, with its logs scanned for secrets.
func startTaggedCaddy(t *testing.T, site string) (*testServer, *taggedBackend) {
	t.Helper()
	watchLogs(t)
	s := newTestServer(t)
	tagged := newTaggedBackend(t)
	s.backend = &recordingBackend{srv: tagged.srv}
	s.load(s.adaptDebug(site, ""))
	return s, tagged
}

// newLoadRequests returns the requests of the load test in a fixed random
// order. They are made before the run, so that they do not count in the
// memory samples. There are more tokens of each kind than the cache that
// keeps them holds, so the caches evict entries all the time.
func newLoadRequests(t *testing.T) []loadRequest {
	t.Helper()
	now := time.Now()
	var requests []loadRequest
	add := func(verdict string, sdkAppID int, userID, token string, status, code int) {
		query := credentialsQuery(sdkAppID, userID, token)
		query.Set("verdict", verdict)
		requests = append(requests, loadRequest{verdict: verdict, target: "/?" + query.Encode(), status: status, code: code})
	}

	const genuineCount = 1500 // cache_size of loadSite is 500
	for i := range genuineCount {
		user := "user" + strconv.Itoa(i)
		token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: user})
		watchSecret("genuine UserSig", token)
		add(verdictGenuine, testAppID, user, token, http.StatusOK, 0)
		if i%3 == 0 {
			add(verdictWrongUser, testAppID, user+"x", token, http.StatusUnauthorized, usersig.CodeIdentifierMismatch)
		}
	}
	for i := range 400 { // negative_cache_size of loadSite is 100
		user := "user" + strconv.Itoa(i)
		forged := issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: user})
		watchSecret("forged UserSig", forged)
		add(verdictForged, testAppID, user, forged, http.StatusUnauthorized, usersig.CodeInvalidSignature)

		expired := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: user, Time: now.Add(-time.Duration(2+i%5) * time.Hour), Expire: 60})
		watchSecret("expired UserSig", expired)
		add(verdictExpired, testAppID, user, expired, http.StatusUnauthorized, usersig.CodeExpired)

		otherApp := issue(t, otherAppKey, usersig.Params{SDKAppID: otherAppID, UserID: user})
		watchSecret("UserSig of the other app", otherApp)
		add(verdictWrongApp, testAppID, user, otherApp, http.StatusUnauthorized, usersig.CodeSDKAppIDMismatch)

		// A genuine token cut short (malformed zlib stream) or garbage in
		// the UserSig alphabet.
		truncated := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: user})
		truncated = truncated[:len(truncated)-8]
		garbage := strings.Repeat("eJzz", 20+i%30)
		if i%2 == 0 {
			add(verdictMalformed, testAppID, user, garbage, http.StatusUnauthorized, usersig.CodeMalformed)
		} else {
			add(verdictMalformed, testAppID, user, truncated, http.StatusUnauthorized, usersig.CodeMalformed)
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(requests), func(i, j int) { requests[i], requests[j] = requests[j], requests[i] })
	return requests
}

// loadSite serves the test app and the other app with small caches.
var loadSite = fmt.Sprintf(`
	usersig {
		app %d %s
		app %d %s
		cache_size 500
		negative_cache_size 100
	}
	reverse_proxy {backend}`, testAppID, testKey, otherAppID, otherAppKey)

// memorySample is the memory in use at one moment of a run.
type memorySample struct {
	at        time.Duration
	heapInuse uint64
	rss       uint64 // VmRSS in bytes, 0 where /proc is missing
}

// sampleMemory records a sample every interval until stop is closed.
func sampleMemory(start time.Time, interval time.Duration, stop <-chan struct{}) []memorySample {
	var samples []memorySample
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return samples
		case <-ticker.C:
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			samples = append(samples, memorySample{at: time.Since(start), heapInuse: m.HeapInuse, rss: residentBytes()})
		}
	}
}

// residentBytes returns VmRSS from /proc/self/status, or 0.
func residentBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// peakIn returns the largest HeapInuse and VmRSS of the samples taken
// between from and to.
func peakIn(samples []memorySample, from, to time.Duration) (heap, rss uint64, n int) {
	for _, s := range samples {
		if s.at >= from && s.at < to {
			heap = max(heap, s.heapInuse)
			rss = max(rss, s.rss)
			n++
		}
	}
	return heap, rss, n
}

// loadResult counts the outcomes of a load run.
type loadResult struct {
	sent         atomic.Int64
	errors       atomic.Int64 // transport errors
	serverErrors atomic.Int64 // 5xx
	unexpected   atomic.Int64 // other status or code than expected
	acceptedBy   sync.Map     // verdict → *atomic.Int64 of 200 responses
	firstMu      sync.Mutex
	first        string
}

func (r *loadResult) report(format string, args ...any) {
	r.firstMu.Lock()
	defer r.firstMu.Unlock()
	if r.first == "" {
		r.first = fmt.Sprintf(format, args...)
	}
}

func (r *loadResult) accepted(verdict string) int64 {
	if n, ok := r.acceptedBy.Load(verdict); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// check sends req and counts the outcome.
func (r *loadResult) check(client *http.Client, siteURL string, req loadRequest) {
	r.sent.Add(1)
	resp, err := client.Get(siteURL + req.target)
	if err != nil {
		r.errors.Add(1)
		r.report("%s request: %v", req.verdict, err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		r.errors.Add(1)
		r.report("%s request: reading the body: %v", req.verdict, err)
		return
	}
	if resp.StatusCode >= 500 {
		r.serverErrors.Add(1)
		r.report("%s request: status %d", req.verdict, resp.StatusCode)
		return
	}
	if resp.StatusCode == http.StatusOK {
		n, _ := r.acceptedBy.LoadOrStore(req.verdict, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	if resp.StatusCode != req.status {
		r.unexpected.Add(1)
		r.report("%s request: status %d, want %d", req.verdict, resp.StatusCode, req.status)
		return
	}
	if req.status != http.StatusOK {
		var reply tencentError
		if err := json.Unmarshal(body, &reply); err != nil || reply.ErrorCode != req.code {
			r.unexpected.Add(1)
			r.report("%s request: body %.100q, want code %d", req.verdict, body, req.code)
		}
	}
}

func TestLoadWithFaults(t *testing.T) {
	s, backend := startTaggedCaddy(t, loadSite)
	watchTestKeys()
	requests := newLoadRequests(t)
	sentBy := make(map[string]*atomic.Int64)
	for _, req := range requests {
		if sentBy[req.verdict] == nil {
			sentBy[req.verdict] = new(atomic.Int64)
		}
	}

	duration := *soakDuration
	const workers = 4
	const maxRequestsPerWorker = 5_000_000 // a bound in case the clock misbehaves
	var result loadResult
	start := time.Now()
	deadline := start.Add(duration)
	stopSampling := make(chan struct{})
	samplesDone := make(chan []memorySample)
	go func() { samplesDone <- sampleMemory(start, 100*time.Millisecond, stopSampling) }()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			next := w * len(requests) / workers
			for i := 0; i < maxRequestsPerWorker && time.Now().Before(deadline); i++ {
				req := requests[next%len(requests)]
				next++
				sentBy[req.verdict].Add(1)
				result.check(s.client, s.siteURL, req)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	samples := <-samplesDone

	verdicts, problems, firstProblem := backend.counts()
	t.Logf("%d requests in %s (%.0f/s) by %d workers: %d transport errors, %d 5xx, %d unexpected responses",
		result.sent.Load(), elapsed.Round(time.Millisecond), float64(result.sent.Load())/elapsed.Seconds(), workers,
		result.errors.Load(), result.serverErrors.Load(), result.unexpected.Load())
	for _, verdict := range slices.Sorted(maps.Keys(sentBy)) {
		t.Logf("  %-10s sent %7d, accepted %7d, seen by the backend %7d", verdict, sentBy[verdict].Load(), result.accepted(verdict), verdicts[verdict])
	}

	if n := result.errors.Load() + result.serverErrors.Load() + result.unexpected.Load(); n > 0 {
		t.Errorf("%d requests failed or got an unexpected response; first: %s", n, result.first)
	}
	if got, want := int64(verdicts[verdictGenuine]), sentBy[verdictGenuine].Load(); got != want {
		t.Errorf("the backend saw %d genuine requests, want %d", got, want)
	}
	for verdict, n := range verdicts {
		if verdict != verdictGenuine {
			t.Errorf("false accept: the backend saw %d %s requests", n, verdict)
		}
	}
	if problems > 0 {
		t.Errorf("%d requests reached the backend with a wrong identity or with the UserSig; first: %s", problems, firstProblem)
	}

	// Memory after warm-up: the peak of the last quarter of the run must
	// stay near the peak of the quarter after the first one. Peaks are
	// compared because HeapInuse rises and falls with each GC cycle.
	warm, warmRSS, warmN := peakIn(samples, duration/4, duration/2)
	last, lastRSS, lastN := peakIn(samples, duration*3/4, duration)
	t.Logf("peak HeapInuse %.1f MB after warm-up (%d samples), %.1f MB at the end (%d samples); peak VmRSS %.1f MB and %.1f MB",
		mib(warm), warmN, mib(last), lastN, mib(warmRSS), mib(lastRSS))
	if warmN == 0 || lastN == 0 {
		t.Fatalf("too few memory samples: %d after warm-up, %d at the end", warmN, lastN)
	}
	const slack = 8 << 20
	if last > warm+warm/5+slack {
		t.Errorf("HeapInuse grew from %.1f MB to %.1f MB, more than 20%% + %d MB", mib(warm), mib(last), slack>>20)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// reloadSite returns a site whose app accepts the given keys.
func reloadSite(keys ...string) string {
	return fmt.Sprintf(`
	usersig {
		app %d %s
	}
	reverse_proxy {backend}`, testAppID, strings.Join(keys, " "))
}

// TestReloadKeySetsUnderLoad reloads the config through the admin API
// while requests flow, alternating between key sets A (testKey and
// testOldKey) and B (testKey only). Requests signed with testKey must
// always pass, and a token signed with testOldKey, accepted and cached
// under A, must be rejected right after each reload to B.
func TestReloadKeySetsUnderLoad(t *testing.T) {
	siteA, siteB := reloadSite(testKey, testOldKey), reloadSite(testKey)
	s := startDebugCaddy(t, siteA, "")
	watchTestKeys()
	configs := [][]byte{s.adaptDebug(siteB, ""), s.adaptDebug(siteA, "")}

	current := issueWatched(t, "UserSig signed with the current key", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	previous := issueWatched(t, "UserSig signed with the previous key", testOldKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issueWatched(t, "forged UserSig", otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	target := func(token string) string {
		return s.siteURL + "/?" + credentialsQuery(testAppID, testUserID, token).Encode()
	}

	// Warm up, then drop the client's and the proxy's connections, so
	// that the baseline holds only the goroutines of a running config.
	for range 3 {
		for _, token := range []string{current, previous, forged} {
			if _, err := s.send("/?"+credentialsQuery(testAppID, testUserID, token).Encode(), nil); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
		}
	}
	closeConnections := func() {
		s.client.CloseIdleConnections()
		s.backend.srv.CloseClientConnections()
	}
	closeConnections()
	baseline := stableGoroutines(3 * time.Second)

	const workers = 4
	const maxRequestsPerWorker = 200_000
	var stop atomic.Bool
	var requests, failures, freshConnRetries, previousAccepted, previousRejected atomic.Int64
	var firstFailure atomic.Value
	fail := func(format string, args ...any) {
		failures.Add(1)
		firstFailure.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < maxRequestsPerWorker && !stop.Load(); i++ {
				token := []string{current, forged, previous}[(i+w)%3]
				resp, reused, err := getTraced(s.client, target(token))
				requests.Add(1)
				if err != nil && !reused {
					// NOTE: on Linux, Caddy 2.11 binds a new SO_REUSEPORT
					// socket for each config and closes the old one, and
					// the kernel drops the connections still waiting in
					// the old socket's accept queue. Such a request never
					// reached a handler, so it is retried once.
					freshConnRetries.Add(1)
					resp, _, err = getTraced(s.client, target(token))
				}
				if err != nil {
					fail("request failed: %v", err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case token == current && resp.StatusCode != http.StatusOK:
					fail("current key: status %d, want 200", resp.StatusCode)
				case token == forged && (resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("70009"))):
					fail("forged token: response %d %.80q, want 401 70009", resp.StatusCode, body)
				case token == previous && resp.StatusCode == http.StatusOK:
					previousAccepted.Add(1)
				case token == previous && resp.StatusCode == http.StatusUnauthorized && bytes.Contains(body, []byte("70009")):
					previousRejected.Add(1)
				case token == previous:
					fail("previous key: response %d %.80q, want 200 or 401 70009", resp.StatusCode, body)
				}
			}
		})
	}

	// Caddy may close admin connections while it applies a config, so
	// each reload goes over a new connection.
	adminClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	reloads := *reloadCount
	reloadStart := time.Now()
	for i := range reloads {
		toB := i%2 == 0
		resp, err := adminClient.Post("http://"+s.adminAddr+"/load", "application/json", bytes.NewReader(configs[i%2]))
		if err != nil {
			t.Errorf("reload %d: %v", i, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("reload %d: admin API status %d: %s", i, resp.StatusCode, body)
			continue
		}

		// The new config must handle the first request after the
		// reload, sent on a new connection. Under B, the previous key's
		// token, cached under A, is rejected.
		probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err = probe.Get(target(previous))
		if err != nil {
			// Linux may reset a new connection queued on the old
			// config's SO_REUSEPORT socket; it reached no handler.
			freshConnRetries.Add(1)
			resp, err = probe.Get(target(previous))
		}
		if err != nil {
			t.Errorf("reload %d: probe with the previous key: %v", i, err)
		} else {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case toB && (resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("70009"))):
				t.Errorf("reload %d to key set B: previous key got %d %.80q, want 401 70009", i, resp.StatusCode, body)
			case !toB && resp.StatusCode != http.StatusOK:
				t.Errorf("reload %d to key set A: previous key got %d %.80q, want 200", i, resp.StatusCode, body)
			}
		}

		// Let some requests run on each config before the next reload.
		for start := requests.Load(); requests.Load() < min(start+20, workers*maxRequestsPerWorker) && !stop.Load(); {
			time.Sleep(time.Millisecond)
		}
	}
	reloadTime := time.Since(reloadStart)
	stop.Store(true)
	wg.Wait()

	t.Logf("%d reloads in %s; %d requests, %d retried once after their new connection was dropped; previous key accepted %d times, rejected %d times",
		reloads, reloadTime.Round(time.Millisecond), requests.Load(), freshConnRetries.Load(), previousAccepted.Load(), previousRejected.Load())
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed or got a wrong response; first: %v", n, requests.Load(), firstFailure.Load())
	}

	closeConnections()
	if n := goroutinesAtMost(baseline, 10*time.Second); n > baseline {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines after the reloads, %d before\n%s", n, baseline, buf)
	} else {
		t.Logf("goroutines: %d before the reloads, %d after", baseline, n)
	}
}
