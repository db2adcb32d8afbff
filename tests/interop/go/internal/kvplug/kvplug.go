// Package kvplug holds what the interop host and plugin programs share: the
// handshake, the go-plugin glue for tether.kv.v1.KV and a tiny Adder.
package kvplug

import (
	"context"
	"os/exec"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
)

// Name is the key of the KV plugin in every plugin set.
const Name = "kv"

// Handshake is the cookie both sides agree on. Hosts offer version 1.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "TETHER_KV_PLUGIN",
	MagicCookieValue: "kv-7d3f2a",
}

// Plugin is the plugin.GRPCPlugin for the KV service. Plugins set NewServer;
// hosts leave it nil.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	NewServer func(*plugin.GRPCBroker) kvv1.KVServer
}

// Client is what a host gets from Dispense(Name).
type Client struct {
	KV     kvv1.KVClient
	Broker *plugin.GRPCBroker
}

func (p *Plugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	kvv1.RegisterKVServer(s, p.NewServer(b))
	return nil
}

func (p *Plugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{KV: kvv1.NewKVClient(c), Broker: b}, nil
}

// HostConfig is the ClientConfig both Go hosts start from; callers add the
// logger and output sinks.
func HostConfig(argv []string, autoMTLS bool) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{Name: &Plugin{}},
		Cmd:              exec.Command(argv[0], argv[1:]...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         autoMTLS,
	}
}

// Adder answers a+b.
type Adder struct {
	kvv1.UnimplementedAdderServer
}

func (Adder) Add(_ context.Context, r *kvv1.AddRequest) (*kvv1.AddResponse, error) {
	return &kvv1.AddResponse{Sum: r.A + r.B}, nil
}

// ServeAdder serves an Adder on broker id until the broker closes. It blocks.
func ServeAdder(b *plugin.GRPCBroker, id uint32) {
	b.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		kvv1.RegisterAdderServer(s, Adder{})
		return s
	})
}
