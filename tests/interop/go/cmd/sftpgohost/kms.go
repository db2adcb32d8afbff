package main

import (
	"fmt"

	"github.com/sftpgo/sdk/plugin/kms"
)

type encryptReq struct {
	Payload        string `json:"payload"`
	AdditionalData string `json:"additional_data"`
	URL            string `json:"url"`
	MasterKey      string `json:"master_key"`
}

type encryptResp struct {
	Payload string `json:"payload"`
	Key     string `json:"key"`
	Mode    int32  `json:"mode"`
}

type decryptReq struct {
	Payload        string `json:"payload"`
	Key            string `json:"key"`
	AdditionalData string `json:"additional_data"`
	Mode           int    `json:"mode"`
	URL            string `json:"url"`
	MasterKey      string `json:"master_key"`
}

type decryptResp struct {
	Payload string `json:"payload"`
}

func runKMS(raw any, r *recorder) error {
	k, ok := raw.(kms.Service)
	if !ok {
		return fmt.Errorf("dispensed %T does not implement kms.Service", raw)
	}
	enc := func(q encryptReq, ex expect) {
		r.do("Encrypt", "Encrypt", q, ex, func() (any, error) {
			p, key, mode, err := k.Encrypt(q.Payload, q.AdditionalData, q.URL, q.MasterKey)
			return encryptResp{p, key, mode}, err
		})
	}
	dec := func(q decryptReq, ex expect) {
		r.do("Decrypt", "Decrypt", q, ex, func() (any, error) {
			p, err := k.Decrypt(q.Payload, q.Key, q.AdditionalData, q.Mode, q.URL, q.MasterKey)
			return decryptResp{p}, err
		})
	}
	encIs := func(want encryptResp) expect {
		return expect{check: func(resp any) string {
			if got := resp.(encryptResp); got != want {
				return fmt.Sprintf("got %+v, want %+v", got, want)
			}
			return ""
		}}
	}
	decIs := func(want string) expect {
		return expect{check: func(resp any) string {
			if got := resp.(decryptResp).Payload; got != want {
				return fmt.Sprintf("payload = %q, want %q", got, want)
			}
			return ""
		}}
	}

	// Reference cipher of cmd/sftpgo-plugins kms: reverse by code point plus
	// "|enc"; key binds additional_data and url; mode 2 = master key "mk".
	const (
		secret = "s3cret ✓ payload"
		url1   = "tether://kms/keys/one?region=eu-west-1"
		url2   = "tether://kms/keys/two"
	)
	enc(encryptReq{secret, "ad-1", url1, "mk"},
		encIs(encryptResp{"daolyap ✓ terc3s|enc", "k1|ad=ad-1|url=" + url1, 2}))
	dec(decryptReq{"daolyap ✓ terc3s|enc", "k1|ad=ad-1|url=" + url1, "ad-1", 2, url1, "mk"}, decIs(secret))
	enc(encryptReq{"plain", "", url2, ""}, encIs(encryptResp{"nialp|enc", "k1|ad=|url=" + url2, 1}))
	dec(decryptReq{"nialp|enc", "k1|ad=|url=" + url2, "", 1, url2, ""}, decIs("plain"))
	dec(decryptReq{"daolyap ✓ terc3s|enc", "k1|ad=ad-1|url=" + url1, "ad-2", 2, url1, "mk"},
		expect{wantErr: "key mismatch"})
	enc(encryptReq{secret, "ad-1", url1, "wrong"}, expect{wantErr: "invalid master key"})
	return nil
}
