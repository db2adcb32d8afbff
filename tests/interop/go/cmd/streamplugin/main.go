// Command streamplugin is a go-plugin gRPC plugin whose KV.List misbehaves on
// purpose, by prefix, to test the edges of the host's client streams against
// grpc-go: endless streams (cancel, deadline, backpressure), an error status
// after some messages, and a trailers-only error. go-plugin registers grpc-go's
// reflection service too (a bidi stream that ends when the host half-closes).
//
// Each List call appends one line to the file named by STREAMPLUGIN_LOG (if
// set) when it ends: "<prefix> sent=<n> err=<error>", so a test can see what
// the plugin saw (a cancel, how far a producer got before flow control).
// It also appends "conn begin" and "conn end" for each connection the host
// opens and closes, so a test can see that a cancel left the connection up.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

type server struct {
	kvv1.UnimplementedKVServer
	mu sync.Mutex
}

func (s *server) record(prefix string, sent int, err error) {
	s.line(fmt.Sprintf("%s sent=%d err=%v", prefix, sent, err))
}

func (s *server) line(text string) {
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
	fmt.Fprintln(f, text)
}

// connLog is a stats.Handler that logs the beginning and end of each connection.
type connLog struct{ s *server }

func (c connLog) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c connLog) HandleRPC(context.Context, stats.RPCStats)                         {}
func (c connLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c connLog) HandleConn(_ context.Context, st stats.ConnStats) {
	switch st.(type) {
	case *stats.ConnBegin:
		c.s.line("conn begin")
	case *stats.ConnEnd:
		c.s.line("conn end")
	}
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
	s := &server{}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: kvplug.Handshake,
		Plugins: plugin.PluginSet{kvplug.Name: &kvplug.Plugin{
			NewServer: func(*plugin.GRPCBroker) kvv1.KVServer { return s },
		}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.StatsHandler(connLog{s})))
		},
	})
}
