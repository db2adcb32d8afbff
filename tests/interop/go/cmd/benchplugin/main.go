// Command benchplugin is the Go KV plugin of Tether's large-answer benchmark:
// Get and Put only, served by go-plugin with the request size limit raised to
// MaxInt32 so the host can store a Terraform-schema-sized value (7 MiB) and
// read it back. go-plugin's default server keeps grpc-go's 4 MiB receive
// limit, which is why bin/kvplugin refuses such a Put.
//
// A Get of the key "metadata:NAME" answers the request metadata NAME instead
// (values joined by ","; found only if it was sent), so the tests of the lean
// call path can check the headers a Go server receives.
package main

import (
	"context"
	"math"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

type store struct {
	kvv1.UnimplementedKVServer
	mu   sync.RWMutex
	data map[string][]byte
}

func (s *store) Get(ctx context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	if name, ok := strings.CutPrefix(r.Key, "metadata:"); ok {
		md, _ := metadata.FromIncomingContext(ctx)
		values := md.Get(name)
		return &kvv1.GetResponse{Value: []byte(strings.Join(values, ",")), Found: len(values) > 0}, nil
	}
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
