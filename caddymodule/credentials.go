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

	// userSigPair locates the query parameter that carried the UserSig,
	// so that removeUserSig can cut it out without parsing the query
	// again.
	userSigPair queryPair
}

// queryPair is the position of one "name=value" parameter in a raw query:
// rawQuery[start:end]. It is unset when end is 0, and invalid when more
// than one parameter carried the credential.
type queryPair struct {
	rawQuery   string
	start, end int
	several    bool
}

// credential names one of the three credentials.
type credential int

const (
	credSDKAppID credential = iota
	credUserID
	credUserSig
)

// field returns the field of c that holds the credential.
func (c *credentials) field(credential credential) *string {
	switch credential {
	case credSDKAppID:
		return &c.sdkAppID
	case credUserID:
		return &c.userID
	}
	return &c.userSig
}

// queryName is a query parameter name that carries a credential.
type queryName struct {
	name       string
	credential credential

	// hasEquals is true when the name contains '='. Such a name can only
	// match a parameter whose name is percent-encoded.
	hasEquals bool
}

// credentialReader reads the three credentials from a request.
type credentialReader struct {
	sdkAppID []source
	userID   []source
	userSig  []source

	// query lists the query sources of all three credentials, so that
	// read parses the query string once for all of them.
	query []queryName
}

// newCredentialReader returns a reader for the given sources of each
// credential.
func newCredentialReader(sdkAppID, userID, userSig []source) credentialReader {
	cr := credentialReader{sdkAppID: sdkAppID, userID: userID, userSig: userSig}
	for index, sources := range [...][]source{sdkAppID, userID, userSig} {
		for _, s := range sources {
			if s.kind == fromQuery {
				cr.query = append(cr.query, queryName{
					name:       s.name,
					credential: credential(index),
					hasEquals:  strings.IndexByte(s.name, '=') >= 0,
				})
			}
		}
	}
	return cr
}

// read reads the request's credentials into c, which must be zero. It
// fails when one credential has two different non-empty values, in two
// sources or twice in one source, or a query value that does not
// percent-decode, which another parser behind the gateway could read
// differently. The same value given twice is accepted, and empty values
// count as absent.
func (cr *credentialReader) read(r *http.Request, c *credentials) *failure {
	if (len(cr.query) > 0 && !cr.readQuery(r.URL.RawQuery, c)) ||
		!readHeadersAndCookies(r, cr.sdkAppID, &c.sdkAppID) ||
		!readHeadersAndCookies(r, cr.userID, &c.userID) ||
		!readHeadersAndCookies(r, cr.userSig, &c.userSig) {
		// The query may have more UserSig parameters after the one that
		// conflicted, so removeUserSig must look for all of them.
		c.userSigPair.several = true
		return failConflicting
	}
	return nil
}

// readQuery reads the credentials that rawQuery carries into c, in one
// pass over the parameters. It returns false on a conflict.
func (cr *credentialReader) readQuery(rawQuery string, c *credentials) bool {
	if strings.IndexByte(rawQuery, '%') < 0 && strings.IndexByte(rawQuery, '+') < 0 {
		return cr.readPlainQuery(rawQuery, c)
	}
	return cr.readEscapedQuery(rawQuery, c)
}

// readEscapedQuery is readQuery for any query. It decodes each name and
// each value of a credential.
func (cr *credentialReader) readEscapedQuery(rawQuery string, c *credentials) bool {
	for start, end := 0, 0; start < len(rawQuery); start = end + 1 {
		end = len(rawQuery)
		if i := strings.IndexByte(rawQuery[start:], '&'); i >= 0 {
			end = start + i
		}
		rawKey, rawValue, _ := strings.Cut(rawQuery[start:end], "=")
		// A name that does not decode can still match a configured name
		// by its raw spelling, as queryKeyIs allows.
		key, decoded := unescapeQuery(rawKey)
		for _, q := range cr.query {
			if rawKey != q.name && (!decoded || key != q.name) {
				continue
			}
			value, ok := unescapeQuery(rawValue)
			if !ok || !c.takeQuery(q.credential, value, rawQuery, start, end) {
				return false
			}
		}
	}
	return true
}

// readPlainQuery is readQuery for a query without '%' and '+', the usual
// case, in which every name and value is its own decoded form. It
// compares each parameter with the configured names directly, instead of
// cutting it at '=' and looking for escapes in each part, and gives the
// same result as the general loop.
func (cr *credentialReader) readPlainQuery(rawQuery string, c *credentials) bool {
	for start, end := 0, 0; start < len(rawQuery); start = end + 1 {
		end = len(rawQuery)
		if i := strings.IndexByte(rawQuery[start:], '&'); i >= 0 {
			end = start + i
		}
		pair := rawQuery[start:end]
		for i := range cr.query {
			q := &cr.query[i]
			n := len(q.name)
			// A parameter "name" without '=' has the empty value, which
			// counts as absent but is still removed with the UserSig.
			// The byte after the name is checked first: it is '=' in few
			// parameters whose name has another length, so the names of
			// those are rarely compared.
			if q.hasEquals || len(pair) < n || (len(pair) > n && pair[n] != '=') || pair[:n] != q.name {
				continue
			}
			value := ""
			if len(pair) > n {
				value = pair[n+1:]
			}
			if !c.takeQuery(q.credential, value, rawQuery, start, end) {
				return false
			}
		}
	}
	return true
}

// takeQuery stores value, read from the parameter rawQuery[start:end],
// as the credential, and notes where a UserSig came from. It returns
// false when the credential already has another value.
func (c *credentials) takeQuery(credential credential, value, rawQuery string, start, end int) bool {
	if !take(c.field(credential), value) {
		return false
	}
	if credential == credUserSig {
		c.userSigPair.record(rawQuery, start, end)
	}
	return true
}

// record notes that rawQuery[start:end] carried the credential.
func (p *queryPair) record(rawQuery string, start, end int) {
	if p.end != 0 {
		p.several = true
		return
	}
	p.rawQuery, p.start, p.end = rawQuery, start, end
}

// without returns the parts of rawQuery before and after the recorded
// parameter, without the '&' on either side. It returns false when no
// parameter or several were recorded, or when rawQuery is not the query
// they were recorded in.
func (p *queryPair) without(rawQuery string) (before, after string, ok bool) {
	if p.end == 0 || p.several || rawQuery != p.rawQuery {
		return "", "", false
	}
	if p.start > 0 {
		before = rawQuery[:p.start-1]
	}
	if p.end < len(rawQuery) {
		after = rawQuery[p.end+1:]
	}
	return before, after, true
}

// take stores v in *dst, the value found so far for one credential. It
// returns false when both are non-empty and differ.
func take(dst *string, v string) bool {
	switch {
	case v == "" || v == *dst:
		return true
	case *dst != "":
		return false
	}
	*dst = v
	return true
}

// readHeadersAndCookies reads a credential from the header and cookie
// sources among sources into *dst, and returns false on a conflict.
func readHeadersAndCookies(r *http.Request, sources []source, dst *string) bool {
	for _, s := range sources {
		switch s.kind {
		case fromHeader:
			for _, v := range r.Header[s.name] {
				if !take(dst, v) {
					return false
				}
			}
		case fromCookie:
			for _, cookie := range r.CookiesNamed(s.name) {
				if !take(dst, cookie.Value) {
					return false
				}
			}
		}
	}
	return true
}

// withoutQueryParam returns prefix + "?" + rawQuery without the
// parameters named name, keeping the other parameters in their order and
// spelling, with only one allocation. The "?" is left out when no
// parameter remains. It returns false, and no string, when rawQuery has
// no parameter named name.
func withoutQueryParam(prefix, rawQuery, name string) (string, bool) {
	if !hasQueryParam(rawQuery, name) {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(rawQuery))
	b.WriteString(prefix)
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		rawKey, _, _ := strings.Cut(pair, "=")
		if queryKeyIs(rawKey, name) {
			continue
		}
		// Empty pairs before the first kept parameter are dropped, so
		// the query never starts with '&', and later ones are kept.
		switch {
		case b.Len() > len(prefix):
			b.WriteByte('&')
		case pair == "":
			continue
		default:
			b.WriteByte('?')
		}
		b.WriteString(pair)
	}
	return b.String(), true
}

// hasQueryParam reports whether rawQuery has a parameter named name.
func hasQueryParam(rawQuery, name string) bool {
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		rawKey, _, _ := strings.Cut(pair, "=")
		if queryKeyIs(rawKey, name) {
			return true
		}
	}
	return false
}

// queryKeyIs reports whether the raw (escaped) parameter name key is name.
// A configured name matches its raw spelling too, so that a name with '+'
// or '%' in it, such as "a+b", is found as written.
func queryKeyIs(key, name string) bool {
	if key == name {
		return true
	}
	unescaped, ok := unescapeQuery(key)
	return ok && unescaped == name
}

// unescapeQuery decodes a query name or value as url.ParseQuery does, and
// returns false when it does not decode. Most values need no decoding,
// which two byte searches tell faster than one strings.ContainsAny.
func unescapeQuery(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
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
// and r.RequestURI together, with one allocation for both. creds are the
// credentials that read found in r.
func (cr *credentialReader) removeUserSig(r *http.Request, creds *credentials) {
	if before, after, ok := creds.userSigPair.without(r.URL.RawQuery); ok && len(cr.query) > 0 {
		// The usual case: one query parameter carried the UserSig, and
		// read recorded where. Query sources of other names, if any,
		// had no parameter, or several would have been recorded.
		path, _, _ := strings.Cut(r.RequestURI, "?")
		if before == "" {
			// As withoutQueryParam does, drop empty pairs at the start.
			after = strings.TrimLeft(after, "&")
		}
		setQuery(r, path, before, after)
		cr.removeFromHeadersAndCookies(r)
		return
	}
	for _, s := range cr.userSig {
		if s.kind != fromQuery {
			continue
		}
		path, _, _ := strings.Cut(r.RequestURI, "?")
		uri, removed := withoutQueryParam(path, r.URL.RawQuery, s.name)
		if !removed {
			continue
		}
		r.RequestURI = uri
		r.URL.RawQuery = ""
		if len(uri) > len(path) {
			r.URL.RawQuery = uri[len(path)+1:]
		}
		r.URL.ForceQuery = false
	}
	cr.removeFromHeadersAndCookies(r)
}

// setQuery sets the query of r to before + "&" + after, leaving out the
// '&' when either is empty, and its RequestURI to path + "?" + that query,
// or path alone when the query is empty. Both share one allocation.
func setQuery(r *http.Request, path, before, after string) {
	var uri string
	switch {
	case before == "" && after == "":
		uri = path
	case before == "":
		uri = path + "?" + after
	case after == "":
		uri = path + "?" + before
	default:
		uri = path + "?" + before + "&" + after
	}
	r.RequestURI = uri
	r.URL.RawQuery = ""
	if len(uri) > len(path) {
		r.URL.RawQuery = uri[len(path)+1:]
	}
	r.URL.ForceQuery = false
}

// removeFromHeadersAndCookies deletes the UserSig from its header and
// cookie sources.
func (cr *credentialReader) removeFromHeadersAndCookies(r *http.Request) {
	for _, s := range cr.userSig {
		switch s.kind {
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
