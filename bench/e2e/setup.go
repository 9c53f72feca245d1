package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// runPorts prints the requested number of free ports, one a line. The
// listeners stay open until all ports are chosen, so the ports differ.
func runPorts(args []string) error {
	if len(args) != 1 {
		return errors.New("expected one argument, the number of ports")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return fmt.Errorf("invalid number of ports %q: expected a positive integer", args[0])
	}

	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// runTokens issues the tokens of a run and writes their request paths.
func runTokens(args []string) error {
	flags := flag.NewFlagSet("tokens", flag.ContinueOnError)
	count := flags.Int("n", 0, "number of tokens to issue")
	sdkAppID := flags.Uint64("sdkappid", 0, "SDKAppID of the tokens")
	keyFile := flags.String("key-file", "", "file that contains the secret key")
	out := flags.String("out", "", "file to write the request paths to")
	path := flags.String("path", "/v4/rooms", "path of the requests")
	prefix := flags.String("userid-prefix", "user", "letters that begin each UserID, so that two lists issued in the same second differ")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *count < 1 || *sdkAppID == 0 || *keyFile == "" || *out == "" {
		return errors.New("-n, -sdkappid, -key-file and -out are required")
	}

	keyText, err := os.ReadFile(*keyFile)
	if err != nil {
		return fmt.Errorf("reading the secret key: %w", err)
	}
	signer, err := usersig.NewSigner(strings.TrimSpace(string(keyText)))
	if err != nil {
		return err
	}

	lines, err := issuePaths(signer, *count, *sdkAppID, *path, *prefix)
	if err != nil {
		return err
	}

	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, line := range lines {
		w.WriteString(line)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	return f.Close()
}

// issuePaths issues count tokens on every core and returns their request
// paths in the order of their UserIDs, which are prefix followed by a
// seven-digit number.
func issuePaths(signer *usersig.Signer, count int, sdkAppID uint64, path, prefix string) ([]string, error) {
	lines := make([]string, count)
	now := time.Now()
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < count; i += workers {
				userID := fmt.Sprintf("%s%07d", prefix, i)
				token, err := signer.Issue(usersig.Params{SDKAppID: sdkAppID, UserID: userID, Time: now, Expire: 86400})
				if err != nil {
					errs[w] = fmt.Errorf("issuing the token of %s: %w", userID, err)
					return
				}
				// UserSigs use only letters, digits and '*', '-', '_', and
				// the UserIDs only letters and digits, so nothing needs
				// escaping in the query. The parameters are in the order
				// of Tencent's REST API, where the UserSig is followed by
				// two more, so the gateway removes it from the middle.
				lines[i] = fmt.Sprintf("%s?sdkappid=%d&identifier=%s&usersig=%s&random=%d&contenttype=json",
					path, sdkAppID, userID, token, 10000000+i)
			}
		})
	}
	wg.Wait()
	return lines, errors.Join(errs...)
}

// runProbe waits until url responds and checks the status of the response.
func runProbe(args []string) error {
	flags := flag.NewFlagSet("probe", flag.ContinueOnError)
	url := flags.String("url", "", "URL to request")
	want := flags.Int("status", http.StatusOK, "expected status code")
	timeout := flags.Duration("timeout", 30*time.Second, "how long to wait for a response")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("-url is required")
	}

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(*timeout)
	for {
		resp, err := client.Get(*url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != *want {
				return fmt.Errorf("status %d, want %d", resp.StatusCode, *want)
			}
			return nil
		}
		if time.Now().After(deadline) {
			// The URL may hold a UserSig, so the message leaves it out.
			var urlErr *neturl.Error
			if errors.As(err, &urlErr) {
				err = urlErr.Err
			}
			return fmt.Errorf("no response within %s: %w", *timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cacheFields are the fields that runMetrics prints: "cache_" and a value
// of the outcome label of the gateway's cache_lookups_total counter.
var cacheFields = []string{"cache_hit", "cache_miss", "cache_shared", "cache_reject_hit"}

// runMetrics prints the gateway's cache lookup counts, read from the
// Prometheus page at url, as "cache_hit=N cache_miss=N ...". With -since,
// it prints the growth since the counts in the file that an earlier call
// wrote.
func runMetrics(args []string) error {
	return printCounts("metrics", "URL of the Prometheus metrics page", args, readCacheCounts, cacheFields)
}

// printCounts is a subcommand that prints counts read from a page of a
// server: it parses the flags -url and -since from args, reads the page at
// -url with read, and prints the fields in order as "name=N". With -since,
// it prints the growth since the counts in the file that an earlier call
// wrote.
func printCounts(command, urlHelp string, args []string, read func(io.Reader) (map[string]float64, error), fields []string) error {
	flags := flag.NewFlagSet(command, flag.ContinueOnError)
	url := flags.String("url", "", urlHelp)
	since := flags.String("since", "", "file with the output of an earlier call, to print the growth since")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("-url is required")
	}

	resp, err := http.Get(*url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", *url, resp.StatusCode)
	}
	counts, err := read(resp.Body)
	if err != nil {
		return fmt.Errorf("reading %s: %w", *url, err)
	}

	if *since != "" {
		text, err := os.ReadFile(*since)
		if err != nil {
			return err
		}
		earlier, err := parseFields(string(text))
		if err != nil {
			return fmt.Errorf("%s: %w", *since, err)
		}
		for _, name := range fields {
			counts[name] -= earlier[name]
		}
	}

	printed := make([]string, len(fields))
	for i, name := range fields {
		printed[i] = fmt.Sprintf("%s=%.0f", name, counts[name])
	}
	fmt.Println(strings.Join(printed, " "))
	return nil
}

// readCacheCounts reads the samples of caddy_usersig_cache_lookups_total
// from a Prometheus text page, as cacheFields names them.
func readCacheCounts(r io.Reader) (map[string]float64, error) {
	const prefix = `caddy_usersig_cache_lookups_total{outcome="`
	counts := make(map[string]float64)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		outcome, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("unexpected sample %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value in sample %q", line)
		}
		counts["cache_"+outcome] = v
	}
	return counts, sc.Err()
}
