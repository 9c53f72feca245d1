// Package usersigcmd adds the "caddy usersig" subcommands: gen issues a
// UserSig or a PrivateMapKey, verify checks a token with the gateway's
// verifier and explains a rejection, and decode shows what a token contains
// without checking its signature. All format logic lives in package
// usersig, and this package only parses flags, reads secret keys and prints.
package usersigcmd

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// Exit statuses of the subcommands. Caddy's command wrapper turns a
// status above 1 into the process exit status and any returned error into
// status 1, so a rejection must return an error to exit with 1.
const (
	exitOK       = 0 // token issued, valid or decoded
	exitRejected = 1 // token rejected or not decodable
	exitUsage    = 2 // invalid flags or arguments, a missing or unreadable key, an I/O error
)

// maxStdinTokenSize bounds a token read from standard input. It is larger
// than usersig.MaxTokenLength (8192 characters, not counting CR and LF), so
// that a token of a few times that length still gets the verdict
// "malformed" from the verifier instead of a read error.
const maxStdinTokenSize = 64 << 10

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "usersig",
		Usage: "gen|verify|decode [flags]",
		Short: "Issues, verifies and decodes Tencent UserSigs",
		Long: `
Works with Tencent UserSigs (TRTC and IM credentials, TLS sig API v2)
without the Tencent console:

  gen      issues a UserSig, a PrivateMapKey or a UserSig with a userbuf
  verify   verifies a token with the gateway's verifier and reports why it
           is rejected
  decode   prints what a token contains, without checking its signature

The secret key is never taken from the command line. gen and verify read
it from the file given by --key-file (one key per line) or else from the
environment variable USERSIG_KEY (one key).

Run "caddy usersig <subcommand> --help" for the flags of each subcommand.
`,
		CobraFunc: func(cmd *cobra.Command) {
			// Subcommands look up the flag error function from their
			// parent, so this one setting covers gen, verify and decode.
			cmd.SetFlagErrorFunc(usageError)
			cmd.AddCommand(newGenCommand(), newVerifyCommand(), newDecodeCommand())

			// Without a RunE, cobra would print the help and exit with 0
			// for a mistyped subcommand.
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				if len(fl.Args()) == 0 {
					return exitOK, cmd.Help()
				}
				return exitUsage, errors.New("unknown subcommand; expected gen, verify or decode (see caddy usersig --help)")
			})
		},
	})
}

// usageError makes flag parsing errors ("unknown flag", "invalid
// argument") exit with exitUsage. Cobra would otherwise return them as
// plain errors, which caddycmd.Main turns into exit status 1, the status
// of a rejected token. Going through caddycmd.WrapCommandFuncForCobra
// gives them the same exit status and log format as the commands' own
// usage errors.
func usageError(cmd *cobra.Command, err error) error {
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
		return exitUsage, err
	})(cmd, nil)
}

// addKeyFileFlag adds --key-file, shared by gen and verify.
func addKeyFileFlag(cmd *cobra.Command, purpose string) {
	cmd.Flags().String("key-file", "",
		"read the secret key from the file at `PATH`, one key per line, blank lines and surrounding whitespace ignored; "+
			purpose+" (default: the environment variable "+keyEnvVar+", which contains one key)")
}

// addSDKAppIDFlag adds --sdkappid with the given smallest allowed value.
func addSDKAppIDFlag(cmd *cobra.Command, minimum uint64, usage string) {
	cmd.Flags().Var(&uintFlag{min: minimum, max: math.MaxUint32}, "sdkappid", usage)
}

// tokenArgument returns the TOKEN argument, read from standard input when
// it is "-".
func tokenArgument(fl caddycmd.Flags) (string, error) {
	args := fl.Args()
	if len(args) != 1 {
		// The arguments are not echoed: a mistyped command line may hold
		// a secret key.
		return "", fmt.Errorf("expected one TOKEN argument, or - to read it from standard input, but got %d arguments", len(args))
	}
	if args[0] != "-" {
		return args[0], nil
	}
	return readTokenFromStdin()
}

// readTokenFromStdin reads a token from standard input and removes one
// trailing line ending (LF or CRLF), as a shell pipe or a file adds it.
func readTokenFromStdin() (string, error) {
	data, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdinTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("reading TOKEN from standard input: %w", err)
	}
	if len(data) > maxStdinTokenSize {
		return "", fmt.Errorf("TOKEN on standard input is longer than %d bytes; a UserSig is a single line of at most a few thousand characters", maxStdinTokenSize)
	}

	token := string(data)
	if trimmed, ok := strings.CutSuffix(token, "\n"); ok {
		token = strings.TrimSuffix(trimmed, "\r")
	}
	return token, nil
}
