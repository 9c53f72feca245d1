// Package caddymodule is the Caddy v2 glue of caddy-usersig. It provides
// an HTTP handler (module http.handlers.usersig, Caddyfile directive
// usersig) and an authentication provider
// (http.authentication.providers.usersig). Both verify the Tencent UserSig
// of each request, cache the results and hand the verified UserID and
// SDKAppID to the upstream.
//
// The usersig package decodes and verifies the tokens. This package reads
// the credentials from the request, applies the configuration and writes
// the response.
package caddymodule

// Importing this package also registers the "caddy usersig" subcommands,
// so that a Caddy built with xcaddy --with this package has them.
import _ "github.com/caddy-usersig/caddy-usersig/caddymodule/usersigcmd"
