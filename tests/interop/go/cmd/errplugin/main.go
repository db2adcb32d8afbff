// Command errplugin is a go-plugin gRPC plugin serving tether.kv.v1.KV whose
// Get fails with a plain Go error whose text is the requested key, verbatim
// (so codes.Unknown, as an LDAP or database error in a real plugin would be).
// It lets the tests check that an error message with leading or trailing
// spaces, or other characters HTTP/2 treats specially, reaches a Tether host.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

func main() {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "errplugin",
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvplug.Handshake,
		Plugins: plugin.PluginSet{kvplug.Name: &kvplug.Plugin{
			NewServer: func(*plugin.GRPCBroker) kvv1.KVServer { return errServer{} },
		}},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	})
}

type errServer struct {
	kvv1.UnimplementedKVServer
}

// Get returns errors.New(key): the message the host must see is exactly the key.
func (errServer) Get(_ context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	return nil, errors.New(r.Key)
}
