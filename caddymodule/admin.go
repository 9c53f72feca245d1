package caddymodule

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(AdminRevocations{})
}

// revocationRegistry holds the revocation state of every provisioned
// gateway that has a revocation_admin_token, so that the admin API, which
// Caddy builds apart from the HTTP app, can reach it. Provision adds a
// gateway and Cleanup removes it. During a config reload the old and the
// new gateways are both present for a moment, and a POST then goes to
// both.
var revocationRegistry = struct {
	mu  sync.Mutex
	set map[*revocations]struct{}
}{set: make(map[*revocations]struct{})}

func registerRevocations(rv *revocations) {
	revocationRegistry.mu.Lock()
	defer revocationRegistry.mu.Unlock()
	revocationRegistry.set[rv] = struct{}{}
}

func unregisterRevocations(rv *revocations) {
	revocationRegistry.mu.Lock()
	defer revocationRegistry.mu.Unlock()
	delete(revocationRegistry.set, rv)
}

func registeredRevocations() []*revocations {
	revocationRegistry.mu.Lock()
	defer revocationRegistry.mu.Unlock()
	list := make([]*revocations, 0, len(revocationRegistry.set))
	for rv := range revocationRegistry.set {
		list = append(list, rv)
	}
	return list
}

// maxAdminBodySize bounds the body of a POST to the admin endpoint.
const maxAdminBodySize = 64 << 10

// AdminRevocations is the admin API endpoint /usersig/revocations, which
// lists and adds revocations of the running usersig gateways.
//
// Each request needs the header "Authorization: Bearer <token>" with the
// revocation_admin_token of a gateway, and acts on every gateway with that
// token. GET returns their revocations. POST takes one revocation, written
// as a line of the revocation file, appends it to the revocation file of
// each gateway that has one, so that it survives reloads and restarts,
// and applies it at once. A gateway without a revocation file keeps the
// revocation in memory until the config is reloaded.
//
// Without any gateway that has a token, the endpoint responds 404. A
// missing or wrong token gets 401.
type AdminRevocations struct{}

// CaddyModule returns the Caddy module information.
func (AdminRevocations) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.usersig",
		New: func() caddy.Module { return new(AdminRevocations) },
	}
}

// Routes returns the route of the revocations endpoint.
func (a *AdminRevocations) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/usersig/revocations",
		Handler: caddy.AdminHandlerFunc(a.handleRevocations),
	}}
}

// handleRevocations serves GET and POST on /usersig/revocations.
func (a *AdminRevocations) handleRevocations(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use GET or POST", r.Method)}
	}

	gateways, err := authorizedGateways(w, r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		return listRevocations(w, gateways)
	}
	return postRevocation(w, r, gateways)
}

// authorizedGateways returns the revocation state of the gateways whose
// admin token is the bearer token of r.
func authorizedGateways(w http.ResponseWriter, r *http.Request) ([]*revocations, error) {
	registered := registeredRevocations()
	if len(registered) == 0 {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no usersig gateway has a revocation_admin_token")}
	}

	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var matched []*revocations
	if strings.EqualFold(scheme, "Bearer") && token != "" {
		for _, rv := range registered {
			if rv.authorized(token) {
				matched = append(matched, rv)
			}
		}
	}
	if len(matched) == 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="usersig"`)
		return nil, caddy.APIError{HTTPStatus: http.StatusUnauthorized, Err: errors.New("missing or invalid bearer token: send the revocation_admin_token of a usersig gateway")}
	}
	return matched, nil
}

// revocationsResponse is the body of a GET.
type revocationsResponse struct {
	Revocations []revocationEntry `json:"revocations"`
}

// listRevocations writes the revocations of gateways, merged and sorted
// by SDKAppID and UserID (the app-wide entry first).
func listRevocations(w http.ResponseWriter, gateways []*revocations) error {
	now := time.Now()
	merged := newRevocationList()
	for _, rv := range gateways {
		rv.refresh(now)
		for _, e := range rv.list.Load().entries() {
			// The union exceeds the entry limit only when gateways
			// hold different entries, and the entries past the limit
			// are then left out of the response.
			_ = merged.add(e)
		}
	}
	entries := merged.entries()
	slices.SortFunc(entries, func(a, b revocationEntry) int {
		return cmp.Or(cmp.Compare(a.SDKAppID, b.SDKAppID), strings.Compare(a.UserID, b.UserID))
	})
	return writeAdminJSON(w, http.StatusOK, revocationsResponse{Revocations: entries})
}

// postResponse is the body of a successful POST.
type postResponse struct {
	Revocation revocationEntry `json:"revocation"`
	Gateways   int             `json:"gateways"` // the gateways that applied it
	Files      []string        `json:"files"`    // the revocation files it was appended to
}

// postRevocation adds the revocation in the body of r to the gateways
// that serve its SDKAppID.
func postRevocation(w http.ResponseWriter, r *http.Request, gateways []*revocations) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBodySize))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the request body: %v", err)}
	}
	e, err := parseRevocationEntry(body)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid revocation: %v", err)}
	}

	var targets []*revocations
	for _, rv := range gateways {
		if rv.apps[e.SDKAppID] {
			targets = append(targets, rv)
		}
	}
	if len(targets) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("SDKAppID %d is not configured in a usersig gateway with this token", e.SDKAppID)}
	}

	// Append once per file, even when several gateways share it.
	files := []string{}
	for _, rv := range targets {
		if rv.path == "" || slices.Contains(files, rv.path) {
			continue
		}
		if err := appendRevocation(rv.path, e); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("appending to the revocation file %s: %v", rv.path, err)}
		}
		files = append(files, rv.path)
	}
	for _, rv := range targets {
		if err := rv.add(e); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInsufficientStorage, Err: err}
		}
	}
	for _, rv := range targets {
		rv.logger.Info("revocation added through the admin API",
			zap.Uint64("sdkappid", e.SDKAppID),
			zap.String("userid", truncate(e.UserID, maxLoggedBytes)),
			zap.Int64("before", e.Before))
	}
	return writeAdminJSON(w, http.StatusOK, postResponse{Revocation: e, Gateways: len(targets), Files: files})
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*AdminRevocations)(nil)
