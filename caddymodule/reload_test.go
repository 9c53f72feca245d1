package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// stableGoroutines waits until the number of goroutines stops changing,
// or until timeout, and returns it.
func stableGoroutines(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	last := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			return n
		}
		last = n
	}
	return last
}

// goroutinesAtMost waits until at most limit goroutines run, or until
// timeout, and returns the last count.
func goroutinesAtMost(limit int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	n := runtime.NumGoroutine()
	for n > limit && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func TestReloadUnderLoad(t *testing.T) {
	s := startCaddy(t, proxySite)
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	configs := [][]byte{
		s.adapt(strings.Replace(proxySite, "usersig {", "usersig {\n\t\tcache_size 100\n\t\trealm reloaded", 1)),
		s.adapt(proxySite),
	}

	// Warm up, so that the baseline holds the goroutines that Caddy keeps
	// for a running config, then drop the connections of the client and
	// of the proxy to the backend.
	for range 3 {
		s.get("/", credentialsQuery(testAppID, testUserID, genuine), nil)
	}
	closeConnections := func() {
		s.client.CloseIdleConnections()
		// Caddy's reverse proxy keeps idle upstream connections, also
		// those of replaced configs, until they time out. Closing them at
		// the backend leaves only goroutines that outlive a reload.
		s.backend.srv.CloseClientConnections()
	}
	closeConnections()
	baseline := stableGoroutines(3 * time.Second)

	const workers = 4
	const maxRequestsPerWorker = 2000
	var stop atomic.Bool
	var requests, unexpected, freshConnRetries atomic.Int64
	var firstProblem atomic.Value
	report := func(format string, args ...any) {
		unexpected.Add(1)
		firstProblem.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < maxRequestsPerWorker && !stop.Load(); i++ {
				token, want := genuine, http.StatusOK
				if (i+w)%2 == 1 {
					token, want = forged, http.StatusUnauthorized
				}
				target := s.siteURL + "/?" + credentialsQuery(testAppID, testUserID, token).Encode()
				resp, reused, err := getTraced(s.client, target)
				requests.Add(1)
				if err != nil && !reused {
					// NOTE: on Linux, Caddy 2.11 binds a new SO_REUSEPORT
					// socket for each config and closes the old one, and
					// the kernel drops the connections still in the old
					// socket's accept queue. Such a connection never
					// reaches a handler, so it is retried once here.
					freshConnRetries.Add(1)
					resp, _, err = getTraced(s.client, target)
				}
				if err != nil {
					report("request failed: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					report("status = %d, want %d", resp.StatusCode, want)
				}
			}
		})
	}

	// Caddy may close the admin API's idle connections while it applies a
	// new config, so each reload goes over a new connection.
	adminClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	const reloads = 6
	for i := range reloads {
		resp, err := adminClient.Post("http://"+s.adminAddr+"/load", "application/json", bytes.NewReader(configs[i%2]))
		if err != nil {
			t.Errorf("reload %d: %v", i, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("reload %d: admin API status %d: %s", i, resp.StatusCode, body)
		}
		// Let some requests run on each config before the next reload.
		// The workers stop by themselves after their last request.
		for start := requests.Load(); requests.Load() < min(start+20, workers*maxRequestsPerWorker); {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d requests during %d reloads; %d retried after their new connection was dropped", requests.Load(), reloads, freshConnRetries.Load())
	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d of %d requests failed or got an unexpected status; first: %v", n, requests.Load(), firstProblem.Load())
	}

	closeConnections()
	if n := goroutinesAtMost(baseline, 5*time.Second); n > baseline {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines after the reloads, %d before\n%s", n, baseline, buf)
	}
}

// getTraced sends a GET and reports whether it went over a reused
// connection.
func getTraced(client *http.Client, target string) (*http.Response, bool, error) {
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, target, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := client.Do(req)
	return resp, reused.Load(), err
}
