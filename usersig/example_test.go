package usersig_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// A random key for the examples; a real one comes from Tencent's console.
const exampleKey = "5f7a3b2c9d1e4f60a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5"

func ExampleIssue() {
	token, err := usersig.Issue(exampleKey, usersig.Params{
		SDKAppID: 1400000000,
		UserID:   "alice",
		Expire:   86400, // one day
	})
	if err != nil {
		panic(err)
	}
	doc, err := usersig.Decode(token, false)
	if err != nil {
		panic(err)
	}
	fmt.Println(doc.UserID, doc.SDKAppID, doc.Expire)
	// Output: alice 1400000000 86400
}

func ExampleVerifier_Verify() {
	issued := time.Unix(1700000000, 0)
	token, _ := usersig.Issue(exampleKey, usersig.Params{SDKAppID: 1400000000, UserID: "alice", Expire: 3600, Time: issued})

	// The current key first, then the one being retired.
	v, err := usersig.NewVerifier([]string{exampleKey, "previous-key"}, usersig.Policy{MaxSkew: 5 * time.Minute})
	if err != nil {
		panic(err)
	}

	claims, err := v.Verify(token, usersig.Request{SDKAppID: 1400000000, UserID: "alice", Now: issued.Add(time.Minute)})
	fmt.Println(claims.UserID, claims.ExpiresAt(), claims.KeyIndex, err)

	_, err = v.Verify(token, usersig.Request{SDKAppID: 1400000000, UserID: "mallory", Now: issued})
	var e *usersig.Error
	if errors.As(err, &e) {
		fmt.Println(errors.Is(err, usersig.ErrIdentifierMismatch), e.Code(), e.Reason())
	}

	_, err = v.Verify(token, usersig.Request{SDKAppID: 1400000000, UserID: "alice", Now: issued.Add(2 * time.Hour)})
	fmt.Println(errors.Is(err, usersig.ErrExpired))
	// Output:
	// alice 1700003600 0 <nil>
	// true 70013 UserID does not match TLS.identifier
	// true
}

func ExampleSigner_IssuePrivateMapKey() {
	signer, _ := usersig.NewSigner(exampleKey)
	issued := time.Unix(1700000000, 0)
	token, err := signer.IssuePrivateMapKey(
		usersig.Params{SDKAppID: 1400000000, UserID: "alice", Expire: 300, Time: issued},
		10000, usersig.PrivilegeEnterRoom|usersig.PrivilegeSendAudio|usersig.PrivilegeReceiveAudio)
	if err != nil {
		panic(err)
	}

	v, _ := usersig.NewVerifier([]string{exampleKey}, usersig.Policy{})
	claims, err := v.Verify(token, usersig.Request{SDKAppID: 1400000000, UserID: "alice", Now: issued, Mode: usersig.ModeWithUserBuf})
	if err != nil {
		panic(err)
	}
	m, _ := usersig.ParsePrivilegeMap(claims.UserBuf)
	fmt.Println(m.RoomID, m.Privileges, m.Privileges.Has(usersig.PrivilegeSendAudio), m.ExpireAt)
	// Output: 10000 enter,send-audio,receive-audio true 1700000300
}
