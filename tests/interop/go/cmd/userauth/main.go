// Command userauth is an SFTPGo auth plugin (sftpgo/sdk) that reads the user
// JSON the way sftpgo-plugin-auth does: json.Unmarshal into a user struct
// before anything else, so empty bytes fail with "unexpected end of JSON
// input". The password "secret" is correct for any username; the answer is
// the user with a home directory, echoing the id it was given.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/auth"
)

type user struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Status   int    `json:"status,omitempty"`
	HomeDir  string `json:"home_dir,omitempty"`
}

type authenticator struct{}

func parse(username string, userAsJSON []byte) (user, error) {
	var u user
	if err := json.Unmarshal(userAsJSON, &u); err != nil {
		return u, fmt.Errorf("unable to parse user %q: %w", username, err)
	}
	return u, nil
}

func answer(u user, username string) ([]byte, error) {
	u.Username = username
	u.Status = 1
	u.HomeDir = "/srv/" + username
	return json.Marshal(u)
}

func (authenticator) CheckUserAndPass(username, password, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	u, err := parse(username, userAsJSON)
	if err != nil {
		return nil, err
	}
	if password != "secret" {
		return nil, errors.New("invalid credentials")
	}
	return answer(u, username)
}

func (authenticator) CheckUserAndTLSCert(username, tlsCert, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	u, err := parse(username, userAsJSON)
	if err != nil {
		return nil, err
	}
	return answer(u, username)
}

func (authenticator) CheckUserAndPublicKey(username, pubKey, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	u, err := parse(username, userAsJSON)
	if err != nil {
		return nil, err
	}
	return answer(u, username)
}

func (authenticator) CheckUserAndKeyboardInteractive(username, ip, protocol string, userAsJSON []byte) ([]byte, error) {
	u, err := parse(username, userAsJSON)
	if err != nil {
		return nil, err
	}
	return answer(u, username)
}

func (authenticator) SendKeyboardAuthRequest(requestID, username, password, ip string, answers, questions []string, step int32) (string, []string, []bool, int, int, error) {
	return "", nil, nil, 1, 0, nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: auth.Handshake,
		Plugins:         map[string]plugin.Plugin{auth.PluginName: &auth.Plugin{Impl: authenticator{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "userauth", JSONFormat: true, Output: os.Stderr}),
	})
}
