// Command benchplugin is the Go KV plugin of Tether's large-answer benchmark:
// Get and Put only, served by go-plugin with the request size limit raised to
// MaxInt32 so the host can store a Terraform-schema-sized value (7 MiB) and
// read it back. go-plugin's default server keeps grpc-go's 4 MiB receive
// limit, which is why bin/kvplugin refuses such a Put.
package main

import (
	"context"
	"math"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

type store struct {
	kvv1.UnimplementedKVServer
	mu   sync.RWMutex
	data map[string][]byte
}

func (s *store) Get(_ context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.data[r.Key]
	return &kvv1.GetResponse{Value: v, Found: ok}, nil
}

func (s *store) Put(_ context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[r.Key] = r.Value
	return &kvv1.PutResponse{}, nil
}

func main() {
	kv := &store{data: map[string][]byte{}}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvplug.Handshake,
		Plugins: plugin.PluginSet{kvplug.Name: &kvplug.Plugin{
			NewServer: func(*plugin.GRPCBroker) kvv1.KVServer { return kv },
		}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.MaxRecvMsgSize(math.MaxInt32)))
		},
	})
}
