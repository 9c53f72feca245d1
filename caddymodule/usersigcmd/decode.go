package usersigcmd

import (
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

func newDecodeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "decode [--now <unix>] [--lenient-base64] <token>|-",
		Short: "Prints the contents of a token without verifying it",
		Long: `
Decodes TOKEN and prints its JSON document and, for a PrivateMapKey, its
privilege map as one JSON object on standard output. The signature is NOT
checked, so anyone could have written these claims: the output says
"verified": false, and a note on standard error repeats it. Use
"caddy usersig verify" to check a token. decode needs no secret key.

The object has: verified (always false), version (TLS.ver), claims
(sdkappid, userid, time, expire, expires_at, userbuf_b64 and the parsed
privilege_map), expired (at --now) and sig (TLS.sig, the HMAC in standard
base64, which is not secret). A token that cannot be decoded gives result
"malformed" with Tencent's code and a message instead.

A TOKEN of - is read from standard input, without one trailing newline.

Exit status: 0 when the token was decoded, 1 when it is malformed, 2 for
invalid flags or arguments.
`,
		Example: `  $ caddy usersig decode eJyrVgrx...
  $ caddy usersig decode - < token.txt`,
	}

	flags := cmd.Flags()
	flags.Var(&intFlag{min: math.MinInt64, max: math.MaxInt64}, "now",
		"compute \"expired\" at this time, in `UNIX` seconds (default: the current time)")
	flags.Bool("lenient-base64", false, "also accept '+', '/' and '=' and missing padding in the token, as some third-party generators write it")

	cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDecode)
	return cmd
}

func cmdDecode(fl caddycmd.Flags) (int, error) {
	token, err := tokenArgument(fl)
	if err != nil {
		return exitUsage, err
	}
	fmt.Fprintln(os.Stderr, `note: decode does not verify the signature, so these claims are untrusted; use "caddy usersig verify" to check the token`)

	doc, decodeErr := usersig.Decode(token, fl.Bool("lenient-base64"))
	report := decodeReport{Verified: false}
	if decodeErr != nil {
		e, _ := errors.AsType[*usersig.Error](decodeErr) // Decode returns only *usersig.Error
		report.Result = e.Result()
		report.Code = e.Code()
		report.Message = e.Reason()
	} else {
		expired := doc.Expired(timeFlagValue(fl, "now"))
		report.Version = doc.Version
		report.Claims = newClaimsReport(doc)
		report.Expired = &expired
		report.Signature = signatureText(doc)
	}

	if err := printJSON(report); err != nil {
		return exitUsage, fmt.Errorf("writing the result: %w", err)
	}
	if decodeErr != nil {
		return exitRejected, fmt.Errorf("token cannot be decoded: %s (code %d)", report.Message, report.Code)
	}
	return exitOK, nil
}
