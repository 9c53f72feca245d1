module github.com/caddy-usersig/caddy-usersig

go 1.26.0

require github.com/klauspost/compress v1.20.1
