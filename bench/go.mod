module github.com/caddy-usersig/caddy-usersig/bench

go 1.26.0

require (
	github.com/caddy-usersig/caddy-usersig v0.0.0-00010101000000-000000000000
	github.com/klauspost/compress v1.20.1
	github.com/tencentyun/tls-sig-api-v2-golang v1.4.0
)

replace github.com/caddy-usersig/caddy-usersig => ../
