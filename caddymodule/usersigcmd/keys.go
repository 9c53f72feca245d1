package usersigcmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// keyEnvVar is the environment variable that contains one secret key, used
// when --key-file is not given.
const keyEnvVar = "USERSIG_KEY"

// maxKeyFileSize bounds the key file. A current secret key is 64
// characters, so this leaves room for about a thousand keys.
const maxKeyFileSize = 64 << 10

// loadKeys returns the secret keys from --key-file, one per line, or else
// the single key in USERSIG_KEY. Errors name the file or the variable but
// never contain key text.
func loadKeys(fl caddycmd.Flags) ([]string, error) {
	if fl.Changed("key-file") {
		return readKeyFile(fl.String("key-file"))
	}

	key := strings.TrimSpace(os.Getenv(keyEnvVar))
	if key == "" {
		return nil, fmt.Errorf("missing secret key: give --key-file PATH or set the environment variable %s", keyEnvVar)
	}
	if strings.ContainsFunc(key, unicode.IsSpace) {
		return nil, fmt.Errorf("invalid %s: it contains whitespace, but a secret key has none; for several keys, write them one per line into a file and give it with --key-file", keyEnvVar)
	}
	return []string{key}, nil
}

// readKeyFile reads the keys of a key file. Blank lines and the whitespace
// around each key are ignored.
func readKeyFile(path string) ([]string, error) {
	if path == "" {
		return nil, errors.New("invalid --key-file: the path is empty")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading --key-file: %w", err)
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading --key-file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("invalid --key-file %s: larger than %d bytes; it should hold one secret key per line", path, maxKeyFileSize)
	}

	var keys []string
	lineNumber := 0
	for line := range strings.Lines(string(data)) {
		lineNumber++
		key := strings.TrimSpace(line)
		if key == "" {
			continue
		}
		// A secret key never contains whitespace, so two keys on one line
		// or a stray CR are mistakes that would only show up later as
		// "invalid signature".
		if strings.ContainsFunc(key, unicode.IsSpace) {
			return nil, fmt.Errorf("invalid --key-file %s: line %d contains whitespace inside the key; write one key per line", path, lineNumber)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("invalid --key-file %s: it contains no secret key", path)
	}
	return keys, nil
}
