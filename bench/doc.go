// Package bench measures the usersig library against Tencent's official Go
// library (github.com/tencentyun/tls-sig-api-v2-golang v1.4.0) on the same
// inputs, and checks that tokens issued by either one verify with the other.
//
// It is a separate module so that the main module never depends on the
// official library. Everything is in the test files: run
//
//	go test ./...
//	go test -run '^$' -bench . -benchmem ./...
//
// from this directory. BENCHMARKS.md in the repository root records the
// figures.
package bench
