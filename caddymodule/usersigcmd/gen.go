package usersigcmd

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// defaultExpire is the lifetime of a new token when --expire is not
// given: 180 days, the default of Tencent's libraries.
const defaultExpire = 180 * 24 * 60 * 60

func newGenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gen --sdkappid <id> --userid <id> [--expire <seconds>] [--time <unix>] [--privmap --room-id <id>|--room-str <room> --privilege <set>] [--userbuf-b64 <base64>] [--key-file <path>]",
		Short: "Issues a UserSig or a PrivateMapKey",
		Long: `
Issues a token signed with the first secret key and writes it to standard
output, followed by a newline.

By default the token is a plain UserSig. With --privmap it is a
PrivateMapKey: its TLS.userbuf is a privilege map that limits the token to
one TRTC room (--room-id or --room-str) and a set of rights (--privilege),
and that expires together with the token. With --userbuf-b64 it is a
UserSig that carries the given bytes as TLS.userbuf.

Privilege names for --privilege: create, enter, send-audio, receive-audio,
send-video, receive-video, send-screen, receive-screen, and all. "recv-" may
be written for "receive-". A number (decimal, or hexadecimal with 0x) sets
the bits directly: 1 create, 2 enter, 4 send audio, 8 receive audio,
16 send video, 32 receive video, 64 send screen, 128 receive screen.

The secret key comes from --key-file or the environment variable
USERSIG_KEY, never from the command line.

Exit status: 0 when the token was issued, 2 for invalid flags or a missing
or unreadable key.
`,
		Example: `  $ USERSIG_KEY=<secret key> caddy usersig gen --sdkappid 1400000000 --userid alice
  $ caddy usersig gen --key-file key.txt --sdkappid 1400000000 --userid alice --expire 86400
  $ caddy usersig gen --key-file key.txt --sdkappid 1400000000 --userid alice --privmap --room-id 1234 --privilege enter,send-audio,receive-audio`,
	}

	flags := cmd.Flags()
	addSDKAppIDFlag(cmd, 1, "SDKAppID of the application, a decimal `N` from 1 to 4294967295 (required)")
	flags.String("userid", "", "UserID the token is issued to: any UTF-8 `TEXT`, the empty string included (required)")
	flags.Var(&intFlag{value: defaultExpire, min: math.MinInt64, max: math.MaxInt64}, "expire",
		"lifetime of the token in `SECONDS` from its issue time; 15552000 is 180 days, and 0 or less gives a token that expires at once")
	flags.Var(&intFlag{min: 0, max: math.MaxInt64}, "time",
		"issue time written into the token, in `UNIX` seconds (default: the current time)")
	flags.Bool("privmap", false, "issue a PrivateMapKey; needs --room-id or --room-str, and --privilege")
	flags.Var(&uintFlag{min: 0, max: math.MaxUint32}, "room-id",
		"numeric TRTC room `ID` of the PrivateMapKey, from 0 to 4294967295")
	flags.String("room-str", "", "string TRTC room `ID` of the PrivateMapKey; the empty string gives numeric room 0")
	flags.String("privilege", "", "rights of the PrivateMapKey: a `SET` of comma-separated names or a number (see above)")
	flags.String("userbuf-b64", "", "issue a UserSig whose TLS.userbuf contains these bytes, written in standard `BASE64` with padding")
	addKeyFileFlag(cmd, "gen signs with the first key")

	cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdGen)
	return cmd
}

func cmdGen(fl caddycmd.Flags) (int, error) {
	if len(fl.Args()) != 0 {
		return exitUsage, fmt.Errorf("gen takes no arguments but got %d; give every value with a flag (see --help)", len(fl.Args()))
	}
	if err := requireFlags(fl, "sdkappid", "userid"); err != nil {
		return exitUsage, err
	}
	if err := checkGenFlagCombination(fl); err != nil {
		return exitUsage, err
	}

	params := usersig.Params{
		SDKAppID: uintFlagValue(fl, "sdkappid"),
		UserID:   fl.String("userid"),
		Expire:   intFlagValue(fl, "expire"),
		Time:     timeFlagValue(fl, "time"),
	}
	var privileges usersig.Privilege
	if fl.Bool("privmap") {
		p, err := usersig.ParsePrivilege(fl.String("privilege"))
		if err != nil {
			return exitUsage, fmt.Errorf("invalid --privilege: %s", strings.TrimPrefix(err.Error(), "usersig: "))
		}
		privileges = p
	}
	if fl.Changed("userbuf-b64") {
		buf, err := base64FlagValue(fl, "userbuf-b64")
		if err != nil {
			return exitUsage, err
		}
		params.UserBuf = buf
	}

	keys, err := loadKeys(fl)
	if err != nil {
		return exitUsage, err
	}
	signer, err := usersig.NewSigner(keys[0])
	if err != nil {
		return exitUsage, fmt.Errorf("using the secret key: %w", err)
	}

	var token string
	switch {
	case fl.Changed("room-str"):
		token, err = signer.IssuePrivateMapKeyWithStringRoomID(params, fl.String("room-str"), privileges)
	case fl.Bool("privmap"):
		token, err = signer.IssuePrivateMapKey(params, uint32(uintFlagValue(fl, "room-id")), privileges)
	default:
		token, err = signer.Issue(params)
	}
	if err != nil {
		return exitUsage, fmt.Errorf("issuing the token: %w", err)
	}

	if len(token) > usersig.MaxTokenLength {
		fmt.Fprintf(os.Stderr, "warning: the token is %d characters long, but the gateway and \"caddy usersig verify\" reject tokens longer than %d; use a shorter --userid, --room-str or --userbuf-b64\n",
			len(token), usersig.MaxTokenLength)
	}
	fmt.Println(token)
	return exitOK, nil
}

// checkGenFlagCombination rejects flags that make no sense together, so
// that a PrivateMapKey is never issued for a room or with rights that the
// operator did not ask for.
func checkGenFlagCombination(fl caddycmd.Flags) error {
	if !fl.Bool("privmap") {
		for _, name := range []string{"room-id", "room-str", "privilege"} {
			if fl.Changed(name) {
				return fmt.Errorf("--%s applies only to a PrivateMapKey; add --privmap", name)
			}
		}
		return nil
	}

	if fl.Changed("userbuf-b64") {
		return errors.New("--userbuf-b64 cannot be used with --privmap, whose userbuf is the privilege map")
	}
	if fl.Changed("room-id") && fl.Changed("room-str") {
		return errors.New("--room-id and --room-str cannot be used together; a PrivateMapKey is for one room")
	}
	if !fl.Changed("room-id") && !fl.Changed("room-str") {
		return errors.New("--privmap needs --room-id or --room-str")
	}
	if !fl.Changed("privilege") {
		return errors.New("--privmap needs --privilege, for example --privilege enter,send-audio,receive-audio or --privilege all")
	}
	return nil
}
