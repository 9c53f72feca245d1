// Command e2e is the helper of bench/e2e.sh, the end-to-end load test of
// the gateway against plain Caddy. wrk sends the load. This command does
// the steps around it:
//
//	e2e ports N
//	    prints N TCP ports on 127.0.0.1 that were free a moment ago.
//	e2e tokens -n N -sdkappid ID -key-file FILE -out FILE [-userid-prefix P]
//	    issues N UserSigs for the UserIDs user0000000, user0000001 and so
//	    on (P replaces "user"). It writes one request path a line, with
//	    the credentials in the query, for bench/e2e/rotate.lua.
//	e2e probe -url URL -status CODE [-timeout D]
//	    sends GET requests to URL until one gets a response, and fails
//	    unless its status is CODE.
//	e2e metrics -url URL [-since FILE]
//	    prints the gateway's cache lookup counts from its metrics page, or
//	    their growth since an earlier call.
//	e2e memstats -url URL [-since FILE]
//	    prints a Caddy process's garbage collection count and the bytes
//	    and objects it has allocated, from the expvar page of its admin
//	    endpoint, or their growth since an earlier call.
//	e2e report FILE
//	    reads the results that e2e.sh collected and prints the table of
//	    medians and ratios.
//
// Every address it connects to is the one it is given, which e2e.sh sets
// to 127.0.0.1.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "ports":
		err = runPorts(os.Args[2:])
	case "tokens":
		err = runTokens(os.Args[2:])
	case "probe":
		err = runProbe(os.Args[2:])
	case "metrics":
		err = runMetrics(os.Args[2:])
	case "memstats":
		err = runMemstats(os.Args[2:])
	case "report":
		err = runReport(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: e2e ports N | tokens -n N -sdkappid ID -key-file FILE -out FILE | probe -url URL -status CODE | metrics -url URL [-since FILE] | memstats -url URL [-since FILE] | report FILE")
	os.Exit(2)
}
