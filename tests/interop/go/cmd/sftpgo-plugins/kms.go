package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// reversingKMS implements kms.Service with a transparent, reversible
// "cipher" so that tests can check every field:
//
//	Encrypt: payload -> reverse(payload)+"|enc"
//	         key     =  "k1|ad=<additional_data>|url=<url>"
//	         mode    =  1 without a master key, 2 with master key "mk"
//	                    (any other master key is an error)
//
// Decrypt inverts it and, like an AEAD, refuses a key that does not match
// the additional_data and url it is given, or a mode that does not match
// the master key.
type reversingKMS struct{ log hclog.Logger }

const masterKey = "mk"

func kmsKey(additionalData, url string) string { return "k1|ad=" + additionalData + "|url=" + url }

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

func (k *reversingKMS) Encrypt(payload, additionalData, URL, master string) (string, string, int32, error) {
	k.log.Info("Encrypt", "url", URL)
	mode := int32(1)
	if master != "" {
		if master != masterKey {
			return "", "", 0, errors.New("invalid master key")
		}
		mode = 2
	}
	return reverse(payload) + "|enc", kmsKey(additionalData, URL), mode, nil
}

func (k *reversingKMS) Decrypt(payload, key, additionalData string, mode int, URL, master string) (string, error) {
	k.log.Info("Decrypt", "url", URL, "mode", mode)
	switch mode {
	case 1:
		if master != "" {
			return "", errors.New("mode 1 takes no master key")
		}
	case 2:
		if master != masterKey {
			return "", errors.New("invalid master key")
		}
	default:
		return "", fmt.Errorf("unsupported mode %d", mode)
	}
	if want := kmsKey(additionalData, URL); key != want {
		return "", fmt.Errorf("key mismatch: got %q, want %q", key, want)
	}
	body, ok := strings.CutSuffix(payload, "|enc")
	if !ok {
		return "", errors.New("payload not encrypted by this plugin")
	}
	return reverse(body), nil
}
