package usersigcmd

import (
	"errors"
	"fmt"
	"math"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

func newVerifyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify --sdkappid <id> --userid <id> [--now <unix>] [--with-userbuf [--expect-userbuf-b64 <base64>]] [--max-skew <duration>] [--max-lifetime <duration>] [--lenient-base64] [--key-file <path>] <token>|-",
		Short: "Verifies a UserSig or a PrivateMapKey",
		Long: `
Verifies TOKEN for an SDKAppID and a UserID with the verifier that the
gateway uses, and prints one JSON object on standard output:

  result       valid, malformed, sdkappid-mismatch, identifier-mismatch,
               invalid-signature, expired, issued-in-future,
               lifetime-too-long, unexpected-userbuf or userbuf-mismatch
  code         Tencent's error code (70001 expired, 70002 empty,
               70003 malformed and the policy and userbuf failures,
               70009 invalid signature, 70013 UserID mismatch,
               70014 SDKAppID mismatch), 0 when valid
  message      what was wrong
  key_index    position of the matching secret key, counted from 0 in the
               line order of --key-file; only when the signature matched
  claims       what the token asserts, whenever it could be decoded:
               sdkappid, userid, time, expire, expires_at, userbuf_b64 and
               the parsed privilege_map of a PrivateMapKey

A TOKEN of - is read from standard input, without one trailing newline.
A token that begins with "-" must follow "--" or come from standard input.

Without --with-userbuf a plain UserSig is required, and a PrivateMapKey
gives "unexpected-userbuf". With it, the token must carry a userbuf.

--max-skew and --max-lifetime are checks beyond Tencent's own verifiers,
off by default. Durations are Go durations such as 90s, 5m or 720h; only
whole seconds count.

Exit status: 0 when the token is valid, 1 when it is rejected, 2 for
invalid flags or arguments, or a missing or unreadable key.
`,
		Example: `  $ USERSIG_KEY=<secret key> caddy usersig verify --sdkappid 1400000000 --userid alice eJyrVgrx...
  $ caddy usersig verify --key-file keys.txt --sdkappid 1400000000 --userid alice - < token.txt`,
	}

	flags := cmd.Flags()
	addSDKAppIDFlag(cmd, 0, "SDKAppID the token must be issued for, a decimal `N` from 0 to 4294967295 (required)")
	flags.String("userid", "", "UserID the token must be issued to, as `TEXT` compared exactly; may be empty (required)")
	flags.Var(&intFlag{min: math.MinInt64, max: math.MaxInt64}, "now",
		"check expiry at this time, in `UNIX` seconds (default: the current time)")
	flags.Bool("with-userbuf", false, "require a token with a userbuf, such as a PrivateMapKey, instead of a plain UserSig")
	flags.String("expect-userbuf-b64", "", "with --with-userbuf, require the token's userbuf to equal these bytes, written in standard `BASE64` with padding (default: any userbuf)")
	flags.Var(&durationFlag{}, "max-skew", "tolerated clock difference to the issuer: the token stays valid this long after expiry, and fails with issued-in-future when issued more than this `DURATION` after now; 0 accepts any issue time")
	flags.Var(&durationFlag{}, "max-lifetime", "reject tokens whose lifetime (expire) is longer than this `DURATION` with lifetime-too-long; 0 turns the check off")
	flags.Bool("lenient-base64", false, "also accept '+', '/' and '=' and missing padding in the token, as some third-party generators write it")
	addKeyFileFlag(cmd, "during a key rotation list the current key first")

	cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdVerify)
	return cmd
}

func cmdVerify(fl caddycmd.Flags) (int, error) {
	if err := requireFlags(fl, "sdkappid", "userid"); err != nil {
		return exitUsage, err
	}
	request := usersig.Request{
		SDKAppID: uintFlagValue(fl, "sdkappid"),
		UserID:   fl.String("userid"),
		Now:      timeFlagValue(fl, "now"),
		Mode:     usersig.ModeUserSig,
	}
	if fl.Bool("with-userbuf") {
		request.Mode = usersig.ModeWithUserBuf
	}
	if fl.Changed("expect-userbuf-b64") {
		if !fl.Bool("with-userbuf") {
			return exitUsage, errors.New("--expect-userbuf-b64 needs --with-userbuf")
		}
		buf, err := base64FlagValue(fl, "expect-userbuf-b64")
		if err != nil {
			return exitUsage, err
		}
		request.MatchUserBuf = true
		request.UserBuf = buf
	}
	policy := usersig.Policy{
		MaxSkew:       durationFlagValue(fl, "max-skew"),
		MaxLifetime:   durationFlagValue(fl, "max-lifetime"),
		LenientBase64: fl.Bool("lenient-base64"),
	}

	keys, err := loadKeys(fl)
	if err != nil {
		return exitUsage, err
	}
	verifier, err := usersig.NewVerifier(keys, policy)
	if err != nil {
		return exitUsage, fmt.Errorf("using the secret keys: %w", err)
	}
	token, err := tokenArgument(fl)
	if err != nil {
		return exitUsage, err
	}

	claims, verifyErr := verifier.Verify(token, request)
	report := verifyReport{Result: "valid", Message: "the token is valid"}
	if verifyErr != nil {
		e, _ := errors.AsType[*usersig.Error](verifyErr) // Verify returns only *usersig.Error
		report.Result = e.Result()
		report.Code = e.Code()
		report.Message = e.Reason()
	}
	if doc, err := usersig.Decode(token, policy.LenientBase64); err == nil {
		report.Claims = newClaimsReport(doc)
	}
	switch {
	case verifyErr == nil:
		report.KeyIndex = &claims.KeyIndex
	case signatureMatched(verifyErr):
		report.KeyIndex = &claims.KeyIndex
	}

	if err := printJSON(report); err != nil {
		return exitUsage, fmt.Errorf("writing the result: %w", err)
	}
	if verifyErr != nil {
		return exitRejected, fmt.Errorf("token rejected: %s (code %d)", report.Result, report.Code)
	}
	return exitOK, nil
}

// signatureMatched reports whether Verify failed in a check that comes
// after the signature check, which therefore passed.
func signatureMatched(err error) bool {
	for _, kind := range []error{
		usersig.ErrExpired,
		usersig.ErrIssuedInFuture,
		usersig.ErrLifetimeTooLong,
		usersig.ErrUnexpectedUserBuf,
		usersig.ErrUserBufMismatch,
	} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}
