// Command caddy is Caddy with its standard modules and the UserSig gateway.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-usersig/caddy-usersig/caddymodule"
)

func main() {
	caddycmd.Main()
}
