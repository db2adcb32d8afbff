package main

import (
	"errors"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// aliceJSON is the SFTPGo user every successful "alice" check returns.
const aliceJSON = `{"username":"alice","status":1,"home_dir":"/srv/alice","permissions":{"/":["*"]}}`

const (
	alicePassword  = "wonderland"
	alicePublicKey = "ssh-ed25519 AAAA-test"
)

// authenticator implements auth.Authenticator.
//
// The username picks the behaviour: "alice" has valid credentials, "existing"
// (password check only) is a user SFTPGo must already know, and "echo" makes
// every RPC answer with a JSON echo of the arguments it received.
type authenticator struct{ log hclog.Logger }

func (a *authenticator) CheckUserAndPass(username, password, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	a.log.Info("CheckUserAndPass", "username", username, "ip", ip, "protocol", protocol)
	switch {
	case username == "echo":
		return mustJSON(map[string]any{"rpc": "CheckUserAndPass", "username": username, "password": password,
			"ip": ip, "protocol": protocol, "user": string(userAsJSON)}), nil
	case username == "alice" && password == alicePassword:
		return []byte(aliceJSON), nil
	case username == "existing":
		return []byte{}, nil
	}
	return nil, errors.New("invalid credentials")
}

func (a *authenticator) CheckUserAndTLSCert(username, tlsCert, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	a.log.Info("CheckUserAndTLSCert", "username", username, "ip", ip, "protocol", protocol)
	switch {
	case username == "echo":
		return mustJSON(map[string]any{"rpc": "CheckUserAndTLSCert", "username": username, "tlsCert": tlsCert,
			"ip": ip, "protocol": protocol, "user": string(userAsJSON)}), nil
	case username == "alice" && strings.Contains(tlsCert, "BEGIN CERTIFICATE"):
		return []byte(aliceJSON), nil
	}
	return nil, errors.New("invalid certificate")
}

func (a *authenticator) CheckUserAndPublicKey(username, pubKey, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	a.log.Info("CheckUserAndPublicKey", "username", username, "ip", ip, "protocol", protocol)
	switch {
	case username == "echo":
		return mustJSON(map[string]any{"rpc": "CheckUserAndPublicKey", "username": username, "pubKey": pubKey,
			"ip": ip, "protocol": protocol, "user": string(userAsJSON)}), nil
	case username == "alice" && pubKey == alicePublicKey:
		return []byte(aliceJSON), nil
	}
	return nil, errors.New("invalid public key")
}

func (a *authenticator) CheckUserAndKeyboardInteractive(username, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	a.log.Info("CheckUserAndKeyboardInteractive", "username", username, "ip", ip, "protocol", protocol)
	switch username {
	case "echo":
		return mustJSON(map[string]any{"rpc": "CheckUserAndKeyboardInteractive", "username": username,
			"ip": ip, "protocol": protocol, "user": string(userAsJSON)}), nil
	case "alice":
		return []byte(aliceJSON), nil
	}
	return nil, errors.New("keyboard interactive authentication not available")
}

// SendKeyboardAuthRequest runs a password + one-time-code dialogue for any
// user: step 1 asks SFTPGo to check the password (check_password=1), step 2
// gets SFTPGo's "OK" and asks for a code, step 3 accepts "123456". Anything
// off that path fails (auth_result -1). Username "echo" returns the
// arguments as JSON in instructions.
func (a *authenticator) SendKeyboardAuthRequest(requestID, username, password, ip string, answers, questions []string,
	step int32,
) (string, []string, []bool, int, int, error) {
	a.log.Info("SendKeyboardAuthRequest", "request_id", requestID, "username", username, "step", step)
	if username == "echo" {
		echo := mustJSON(map[string]any{"rpc": "SendKeyboardAuthRequest", "requestID": requestID,
			"username": username, "password": password, "ip": ip, "answers": orEmpty(answers),
			"questions": orEmpty(questions), "step": step})
		return string(echo), []string{"q1: ", "q2: "}, []bool{true, false}, 0, 2, nil
	}
	switch {
	case step == 1:
		return "step1", []string{"Password: "}, []bool{false}, 0, 1, nil
	case step == 2 && slices.Equal(answers, []string{"OK"}):
		return "step2", []string{"Code: "}, []bool{true}, 0, 0, nil
	case step == 3 && slices.Equal(answers, []string{"123456"}):
		return "", nil, nil, 1, 0, nil
	}
	return "", nil, nil, -1, 0, nil
}
