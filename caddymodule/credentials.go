package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// sourceKind is the part of a request that a credential is read from.
type sourceKind int

const (
	fromQuery sourceKind = iota
	fromHeader
	fromCookie
)

// source is one place a credential is read from, as written in the
// configuration: "query:NAME", "header:NAME" or "cookie:NAME".
type source struct {
	kind sourceKind
	name string // the header name is in canonical form
}

func (s source) String() string {
	switch s.kind {
	case fromHeader:
		return "header:" + s.name
	case fromCookie:
		return "cookie:" + s.name
	}
	return "query:" + s.name
}

// parseSource parses "query:NAME", "header:NAME" or "cookie:NAME".
func parseSource(text string) (source, error) {
	kind, name, ok := strings.Cut(text, ":")
	if !ok || name == "" {
		return source{}, fmt.Errorf("invalid source %q: expected query:NAME, header:NAME or cookie:NAME", text)
	}
	switch kind {
	case "query":
		return source{kind: fromQuery, name: name}, nil
	case "header":
		if !validHeaderName(name) {
			return source{}, fmt.Errorf("invalid source %q: %q is not a valid header name", text, name)
		}
		return source{kind: fromHeader, name: http.CanonicalHeaderKey(name)}, nil
	case "cookie":
		if !validHeaderName(name) {
			return source{}, fmt.Errorf("invalid source %q: %q is not a valid cookie name", text, name)
		}
		return source{kind: fromCookie, name: name}, nil
	}
	return source{}, fmt.Errorf("invalid source %q: unknown kind %q, expected query, header or cookie", text, kind)
}

// parseSources parses the sources of one credential. field is the name of
// the configuration field, for the error message.
func parseSources(field string, texts []string) ([]source, error) {
	sources := make([]source, 0, len(texts))
	for _, text := range texts {
		s, err := parseSource(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		sources = append(sources, s)
	}
	return sources, nil
}

// credentials are the values a request carries for the SDKAppID, the
// UserID and the UserSig. An empty string means the request carries none.
type credentials struct {
	sdkAppID string
	userID   string
	userSig  string
}

// credentialReader reads the three credentials from a request.
type credentialReader struct {
	sdkAppID []source
	userID   []source
	userSig  []source
}

// read returns the request's credentials. It fails when one credential has
// two different non-empty values, in two sources or twice in one source,
// or a query value that does not percent-decode, which another parser
// behind the gateway could read differently. The same value given twice is
// accepted, and empty values count as absent.
func (cr *credentialReader) read(r *http.Request) (credentials, *failure) {
	var c credentials
	var ok bool
	if c.sdkAppID, ok = readValue(r, cr.sdkAppID); !ok {
		return c, failConflicting
	}
	if c.userID, ok = readValue(r, cr.userID); !ok {
		return c, failConflicting
	}
	if c.userSig, ok = readValue(r, cr.userSig); !ok {
		return c, failConflicting
	}
	return c, nil
}

// readValue returns the single non-empty value found in sources, or false
// when there are two different ones.
func readValue(r *http.Request, sources []source) (string, bool) {
	var value string
	take := func(v string) bool {
		if v == "" || v == value {
			return true
		}
		if value != "" {
			return false
		}
		value = v
		return true
	}

	for _, s := range sources {
		switch s.kind {
		case fromQuery:
			if !eachQueryValue(r.URL.RawQuery, s.name, take) {
				return "", false
			}
		case fromHeader:
			for _, v := range r.Header[s.name] {
				if !take(v) {
					return "", false
				}
			}
		case fromCookie:
			for _, cookie := range r.CookiesNamed(s.name) {
				if !take(cookie.Value) {
					return "", false
				}
			}
		}
	}
	return value, true
}

// eachQueryValue calls f with the value of every parameter named name in
// rawQuery, in order, and stops when f returns false. It returns false
// as well for a value that does not percent-decode: url.ParseQuery would
// skip it, but an upstream with a looser parser could take it as a second
// value.
func eachQueryValue(rawQuery, name string, f func(string) bool) bool {
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, value, _ := strings.Cut(pair, "=")
		if !queryKeyIs(key, name) {
			continue
		}
		value, ok := unescapeQuery(value)
		if !ok {
			return false
		}
		if !f(value) {
			return false
		}
	}
	return true
}

// removeQueryParam returns rawQuery without the parameters named name,
// keeping the other parameters in their order and spelling.
func removeQueryParam(rawQuery, name string) string {
	var b strings.Builder
	removed := false
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, _, _ := strings.Cut(pair, "=")
		if queryKeyIs(key, name) {
			removed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
	}
	if !removed {
		return rawQuery
	}
	return b.String()
}

// queryKeyIs reports whether the raw (escaped) parameter name key is name.
func queryKeyIs(key, name string) bool {
	if key == name {
		return true
	}
	if !strings.ContainsAny(key, "%+") {
		return false
	}
	unescaped, ok := unescapeQuery(key)
	return ok && unescaped == name
}

func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// removeCookie deletes the cookie named name from the request's Cookie
// headers, keeping the other cookies.
func removeCookie(h http.Header, name string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		var parts []string
		for part := range strings.SplitSeq(line, ";") {
			trimmed := strings.TrimSpace(part)
			cookieName, _, _ := strings.Cut(trimmed, "=")
			if trimmed == "" || cookieName == name {
				continue
			}
			parts = append(parts, trimmed)
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = kept
}

// removeUserSig deletes the UserSig from every source it may have come
// from, so that the upstream never receives it. It updates r.URL.RawQuery
// and r.RequestURI together.
func (cr *credentialReader) removeUserSig(r *http.Request) {
	for _, s := range cr.userSig {
		switch s.kind {
		case fromQuery:
			query := removeQueryParam(r.URL.RawQuery, s.name)
			if query == r.URL.RawQuery {
				continue
			}
			r.URL.RawQuery = query
			r.URL.ForceQuery = false
			path, _, _ := strings.Cut(r.RequestURI, "?")
			if query != "" {
				path += "?" + query
			}
			r.RequestURI = path
		case fromHeader:
			r.Header.Del(s.name)
		case fromCookie:
			removeCookie(r.Header, s.name)
		}
	}
}

// validHeaderName reports whether name is a token as RFC 9110 section 5.6.2
// defines it, the syntax of header field names and cookie names.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
