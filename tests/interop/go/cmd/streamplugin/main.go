// Command streamplugin is a go-plugin gRPC plugin whose KV.List misbehaves on
// purpose, by prefix, to test the edges of the host's client streams against
// grpc-go: endless streams (cancel, deadline, backpressure), an error status
// after some messages, and a trailers-only error. go-plugin registers grpc-go's
// reflection service too (a bidi stream that ends when the host half-closes).
//
// Each List call appends one line to the file named by STREAMPLUGIN_LOG (if
// set) when it ends: "<prefix> sent=<n> err=<error>", so a test can see what
// the plugin saw (a cancel, how far a producer got before flow control).
package main

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

type server struct {
	kvv1.UnimplementedKVServer
	mu sync.Mutex
}

func (s *server) record(prefix string, sent int, err error) {
	path := os.Getenv("STREAMPLUGIN_LOG")
	if path == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ferr := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s sent=%d err=%v\n", prefix, sent, err)
}

// List: "endless/<size>" sends entries of <size> bytes until the call ends;
// "fail-after/" sends three entries then fails with FAILED_PRECONDITION;
// "fail-now/" fails at once (a trailers-only answer); anything else sends
// three entries and ends OK.
func (s *server) List(r *kvv1.ListRequest, stream grpc.ServerStreamingServer[kvv1.Entry]) (err error) {
	sent := 0
	defer func() { s.record(r.Prefix, sent, err) }()
	switch {
	case strings.HasPrefix(r.Prefix, "endless/"):
		var size int
		fmt.Sscanf(strings.TrimPrefix(r.Prefix, "endless/"), "%d", &size)
		value := make([]byte, size)
		for {
			if err := stream.Send(&kvv1.Entry{Key: fmt.Sprint(sent), Value: value}); err != nil {
				return err
			}
			sent++
		}
	case r.Prefix == "fail-now/":
		return status.Error(codes.FailedPrecondition, "nothing to list here")
	}
	for sent < 3 {
		if err := stream.Send(&kvv1.Entry{Key: fmt.Sprint(sent)}); err != nil {
			return err
		}
		sent++
	}
	if r.Prefix == "fail-after/" {
		return status.Error(codes.FailedPrecondition, "failed after three")
	}
	return nil
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvplug.Handshake,
		Plugins: plugin.PluginSet{kvplug.Name: &kvplug.Plugin{
			NewServer: func(*plugin.GRPCBroker) kvv1.KVServer { return &server{} },
		}},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}
