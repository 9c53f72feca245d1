// Package usersig issues, decodes and verifies Tencent UserSigs (TLS sig
// API v2), the credentials that Tencent RTC (TRTC) and Tencent Chat (IM)
// use to identify a user, and builds and parses the PrivateMapKey
// privilege maps that scope a UserSig to a room.
//
// A UserSig is a JSON document signed with HMAC-SHA256 under the app's
// secret key, compressed with zlib and encoded in base64 with '*', '-' and
// '_' in place of '+', '/' and '='. The document carries the UserID
// (TLS.identifier), the SDKAppID, the issue time, the lifetime in seconds
// and, for a PrivateMapKey, a privilege map in TLS.userbuf.
//
// Verification is strict where Tencent's official verifiers are loose:
// one canonical base64 spelling, any valid zlib stream with no trailing
// bytes and a bounded inflated size, strict UTF-8 JSON without duplicate
// members, exact 64-bit integers, and a constant-time signature
// comparison. Every token produced by Tencent's official generators
// verifies. Each failure is an *Error that matches one of the Err* kinds
// with errors.Is and carries Tencent's error code.
//
// A Verifier precomputes the keyed HMAC state of each secret key and pools
// its buffers, so verifying a typical token allocates nothing beyond the
// decoded userbuf of a PrivateMapKey.
package usersig
