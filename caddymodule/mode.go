package caddymodule

import "fmt"

// Values of mode.
const (
	// modeEnforce rejects every request without a valid credential.
	modeEnforce = "enforce"

	// modeOptional lets a request with no credential at all pass
	// unauthenticated, and rejects one with an invalid credential.
	modeOptional = "optional"

	// modeAnnotate never rejects: it sets the identity of a valid
	// credential and the failure placeholders of an invalid one.
	modeAnnotate = "annotate"
)

// validateMode rejects an unknown mode.
func validateMode(mode string) error {
	switch mode {
	case modeEnforce, modeOptional, modeAnnotate:
		return nil
	}
	return fmt.Errorf("mode: unknown value %q: expected %s, %s or %s", mode, modeEnforce, modeOptional, modeAnnotate)
}

// passesWithout reports whether a request that failed authentication goes
// on to the next handler under the gateway's mode. anonymous is true when
// the request carries none of the three credentials.
func (g *Gateway) passesWithout(anonymous bool) bool {
	switch g.Mode {
	case modeAnnotate:
		return true
	case modeOptional:
		return anonymous
	}
	return false
}
