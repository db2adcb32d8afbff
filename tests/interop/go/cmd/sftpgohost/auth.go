package main

import (
	"fmt"
	"slices"

	"github.com/sftpgo/sdk/plugin/auth"
)

// Reference answers of cmd/sftpgo-plugins auth.
const aliceJSON = `{"username":"alice","status":1,"home_dir":"/srv/alice","permissions":{"/":["*"]}}`

// userIn is the SFTPGo user the host sends along (the stored user, if any).
const userIn = `{"id":7,"status":1,"username":"alice","home_dir":"/home/alice-old","uid":1000,"gid":1000,` +
	`"permissions":{"/":["list","download"],"/upload":["*"]},"additional_info":"sent by sftpgohost"}`

const testCert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUdGV0aGVyLXNmdHBnb2hvc3QtdGVzdDAKBggqhkjOPQQD\nAjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwHhcNMjYwMTAxMDAwMDAwWhcNMzYwMTAx\n-----END CERTIFICATE-----\n"

type authResp struct {
	User string `json:"user"`
}

type kbdReq struct {
	RequestID string   `json:"requestID"`
	Username  string   `json:"username"`
	Password  string   `json:"password"`
	IP        string   `json:"ip"`
	Answers   []string `json:"answers"`
	Questions []string `json:"questions"`
	Step      int32    `json:"step"`
}

type kbdResp struct {
	Instructions  string   `json:"instructions"`
	Questions     []string `json:"questions"`
	Echos         []bool   `json:"echos"`
	AuthResult    int      `json:"auth_result"`
	CheckPassword int      `json:"check_password"`
}

func userIs(want string) func(any) string {
	return func(resp any) string {
		if got := resp.(authResp).User; got != want {
			return fmt.Sprintf("user = %q, want %q", got, want)
		}
		return ""
	}
}

func userEchoes(want map[string]any) func(any) string {
	return func(resp any) string { return jsonEqual([]byte(resp.(authResp).User), want) }
}

func kbdIs(want kbdResp) func(any) string {
	return func(resp any) string {
		got := resp.(kbdResp)
		if got.Instructions != want.Instructions || !slices.Equal(got.Questions, want.Questions) ||
			!slices.Equal(got.Echos, want.Echos) || got.AuthResult != want.AuthResult ||
			got.CheckPassword != want.CheckPassword {
			return fmt.Sprintf("got %+v, want %+v", got, want)
		}
		return ""
	}
}

func runAuth(raw any, r *recorder) error {
	a, ok := raw.(auth.Authenticator)
	if !ok {
		return fmt.Errorf("dispensed %T does not implement auth.Authenticator", raw)
	}

	pass := func(username, password, ip, protocol, user string, ex expect) {
		req := map[string]any{"username": username, "password": password, "ip": ip, "protocol": protocol, "user": user}
		r.do("CheckUserAndPass", "CheckUserAndPass", req, ex, func() (any, error) {
			u, err := a.CheckUserAndPass(username, password, ip, protocol, []byte(user))
			return authResp{string(u)}, err
		})
	}
	pass("alice", "wonderland", "198.51.100.7", "SSH", userIn, expect{check: userIs(aliceJSON)})
	pass("alice", "not-the-password", "198.51.100.7", "SSH", userIn, expect{wantErr: "invalid credentials"})
	pass("existing", "pw-of-existing", "198.51.100.8", "FTP", "", expect{check: userIs("")})
	pass("echo", "p@ss wörd|1", "2001:db8::1", "DAV", userIn, expect{check: userEchoes(map[string]any{
		"rpc": "CheckUserAndPass", "username": "echo", "password": "p@ss wörd|1", "ip": "2001:db8::1",
		"protocol": "DAV", "user": userIn,
	})})

	cert := func(username, tlsCert, ip, protocol, user string, ex expect) {
		req := map[string]any{"username": username, "tlsCert": tlsCert, "ip": ip, "protocol": protocol, "user": user}
		r.do("CheckUserAndTLSCert", "CheckUserAndTLSCert", req, ex, func() (any, error) {
			u, err := a.CheckUserAndTLSCert(username, tlsCert, ip, protocol, []byte(user))
			return authResp{string(u)}, err
		})
	}
	cert("alice", testCert, "198.51.100.7", "HTTP", userIn, expect{check: userIs(aliceJSON)})
	cert("alice", "not a certificate", "198.51.100.7", "HTTP", userIn, expect{wantErr: "invalid certificate"})
	cert("echo", testCert, "203.0.113.9", "FTP", userIn, expect{check: userEchoes(map[string]any{
		"rpc": "CheckUserAndTLSCert", "username": "echo", "tlsCert": testCert, "ip": "203.0.113.9",
		"protocol": "FTP", "user": userIn,
	})})

	key := func(username, pubKey, ip, protocol, user string, ex expect) {
		req := map[string]any{"username": username, "pubKey": pubKey, "ip": ip, "protocol": protocol, "user": user}
		r.do("CheckUserAndPublicKey", "CheckUserAndPublicKey", req, ex, func() (any, error) {
			u, err := a.CheckUserAndPublicKey(username, pubKey, ip, protocol, []byte(user))
			return authResp{string(u)}, err
		})
	}
	key("alice", "ssh-ed25519 AAAA-test", "198.51.100.7", "SSH", userIn, expect{check: userIs(aliceJSON)})
	key("alice", "ssh-rsa AAAA-wrong", "198.51.100.7", "SSH", userIn, expect{wantErr: "invalid public key"})
	key("echo", "ssh-ed25519 AAAA-echo comment@host", "198.51.100.9", "SSH", userIn,
		expect{check: userEchoes(map[string]any{
			"rpc": "CheckUserAndPublicKey", "username": "echo", "pubKey": "ssh-ed25519 AAAA-echo comment@host",
			"ip": "198.51.100.9", "protocol": "SSH", "user": userIn,
		})})

	kbd := func(username, ip, protocol, user string, ex expect) {
		req := map[string]any{"username": username, "ip": ip, "protocol": protocol, "user": user}
		r.do("CheckUserAndKeyboardInteractive", "CheckUserAndKeyboardInteractive", req, ex, func() (any, error) {
			u, err := a.CheckUserAndKeyboardInteractive(username, ip, protocol, []byte(user))
			return authResp{string(u)}, err
		})
	}
	kbd("alice", "198.51.100.7", "SSH", userIn, expect{check: userIs(aliceJSON)})
	kbd("bob", "198.51.100.7", "SSH", "", expect{wantErr: "not available"})
	kbd("echo", "192.0.2.33", "SSH", userIn, expect{check: userEchoes(map[string]any{
		"rpc": "CheckUserAndKeyboardInteractive", "username": "echo", "ip": "192.0.2.33", "protocol": "SSH",
		"user": userIn,
	})})

	step := func(q kbdReq, want kbdResp) {
		r.do("SendKeyboardAuthRequest", "SendKeyboardAuthRequest", q, expect{check: kbdIs(want)}, func() (any, error) {
			ins, qs, echos, res, chk, err := a.SendKeyboardAuthRequest(q.RequestID, q.Username, q.Password, q.IP,
				q.Answers, q.Questions, q.Step)
			return kbdResp{ins, qs, echos, res, chk}, err
		})
	}
	// The dialogue as SFTPGo runs it: the ip only on step 1, SFTPGo's "OK"
	// after it checked the password itself.
	const pwHash = "$2a$10$abcdefghijklmnopqrstuu5hJ1cZ2fNQbOe7DAbHjXnPdGmcPZyq"
	step(kbdReq{"req-42", "alice", pwHash, "198.51.100.7", nil, nil, 1},
		kbdResp{"step1", []string{"Password: "}, []bool{false}, 0, 1})
	step(kbdReq{"req-42", "alice", pwHash, "", []string{"OK"}, []string{"Password: "}, 2},
		kbdResp{"step2", []string{"Code: "}, []bool{true}, 0, 0})
	step(kbdReq{"req-42", "alice", pwHash, "", []string{"123456"}, []string{"Code: "}, 3},
		kbdResp{"", nil, nil, 1, 0})
	step(kbdReq{"req-43", "alice", pwHash, "", []string{"000000"}, []string{"Code: "}, 3},
		kbdResp{"", nil, nil, -1, 0})
	echoReq := kbdReq{"req-echo-1", "echo", "pw-hash", "2001:db8::7", []string{"first answer", "", "third"},
		[]string{"Q1? ", "Q2? ", "Q3? "}, 7}
	echoed := map[string]any{
		"rpc": "SendKeyboardAuthRequest", "requestID": echoReq.RequestID, "username": echoReq.Username,
		"password": echoReq.Password, "ip": echoReq.IP, "answers": echoReq.Answers,
		"questions": echoReq.Questions, "step": echoReq.Step,
	}
	r.do("SendKeyboardAuthRequest", "SendKeyboardAuthRequest", echoReq, expect{check: func(resp any) string {
		got := resp.(kbdResp)
		if d := jsonEqual([]byte(got.Instructions), echoed); d != "" {
			return "instructions: " + d
		}
		return kbdIs(kbdResp{got.Instructions, []string{"q1: ", "q2: "}, []bool{true, false}, 0, 2})(resp)
	}}, func() (any, error) {
		q := echoReq
		ins, qs, echos, res, chk, err := a.SendKeyboardAuthRequest(q.RequestID, q.Username, q.Password, q.IP,
			q.Answers, q.Questions, q.Step)
		return kbdResp{ins, qs, echos, res, chk}, err
	})
	return nil
}
