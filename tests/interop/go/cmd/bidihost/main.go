// Command bidihost is a go-plugin host that launches a KV plugin and drives
// its gRPC reflection service (grpc.reflection.v1, a bidi stream) with
// grpc-go, two ways on one stream each:
//
//   - pipelined: sends -n requests without waiting, half-closes (CloseSend),
//     and reads answers until the server ends the stream;
//   - pingpong: sends a request and reads its answer, -n times, then
//     half-closes and waits for the end of the stream.
//
// It prints one JSON report on stdout and kills the plugin. Each stream has a
// 10 s deadline, so a server that never ends its stream shows up as
// DeadlineExceeded in the report, not as a hang.
//
//	bidihost [-n=100] [-automtls=true] -- <cmd> [args...]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	rv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"tether.dev/interop/internal/kvplug"
)

type run struct {
	Sent    int            `json:"sent"`
	Answers int            `json:"answers"`
	InOrder bool           `json:"inOrder"`
	Kinds   map[string]int `json:"kinds"`
	End     string         `json:"end"`
}

type report struct {
	Pipelined run `json:"pipelined"`
	Pingpong  run `json:"pingpong"`
}

// request i: a list, a known symbol (an answer with several files) or an unknown one (an error answer).
func request(i int) *rv1.ServerReflectionRequest {
	switch i % 3 {
	case 0:
		return &rv1.ServerReflectionRequest{Host: fmt.Sprint(i), MessageRequest: &rv1.ServerReflectionRequest_ListServices{}}
	case 1:
		return &rv1.ServerReflectionRequest{Host: fmt.Sprint(i), MessageRequest: &rv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "plugin.GRPCStdio"}}
	default:
		return &rv1.ServerReflectionRequest{Host: fmt.Sprint(i), MessageRequest: &rv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "no.such.Symbol"}}
	}
}

func kind(resp *rv1.ServerReflectionResponse) string {
	switch resp.MessageResponse.(type) {
	case *rv1.ServerReflectionResponse_ListServicesResponse:
		return "list"
	case *rv1.ServerReflectionResponse_FileDescriptorResponse:
		return "files"
	case *rv1.ServerReflectionResponse_ErrorResponse:
		return "error"
	}
	return "other"
}

// record checks that answer number `at` answers request number `at` (grpc-go's server answers in order).
func record(out *run, resp *rv1.ServerReflectionResponse, at int) {
	if resp.GetValidHost() != fmt.Sprint(at) || resp.GetOriginalRequest().GetHost() != fmt.Sprint(at) {
		out.InOrder = false
	}
	out.Kinds[kind(resp)]++
	out.Answers++
}

// finish reads until the end of the stream: "EOF" when the server ended it with OK.
func finish(stream rv1.ServerReflection_ServerReflectionInfoClient, out *run) {
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			out.End = "EOF"
			return
		}
		if err != nil {
			out.End = err.Error()
			return
		}
		record(out, resp, out.Answers)
	}
}

func pipelined(conn *grpc.ClientConn, n int) run {
	out := run{Sent: n, InOrder: true, Kinds: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		out.End = err.Error()
		return out
	}
	go func() {
		for i := 0; i < n; i++ {
			if stream.Send(request(i)) != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	finish(stream, &out)
	return out
}

func pingpong(conn *grpc.ClientConn, n int) run {
	out := run{Sent: n, InOrder: true, Kinds: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		out.End = err.Error()
		return out
	}
	for i := 0; i < n; i++ {
		if err := stream.Send(request(i)); err != nil {
			out.End = err.Error()
			return out
		}
		resp, err := stream.Recv()
		if err != nil {
			out.End = err.Error()
			return out
		}
		record(&out, resp, i)
	}
	_ = stream.CloseSend()
	finish(stream, &out)
	return out
}

func main() {
	n := flag.Int("n", 100, "requests per stream")
	autoMTLS := flag.Bool("automtls", true, "negotiate mTLS with the plugin (go-plugin AutoMTLS)")
	flag.Parse()
	argv := flag.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: bidihost [-n=100] [-automtls=bool] -- <cmd> [args...]")
		os.Exit(2)
	}
	cfg := kvplug.HostConfig(argv, *autoMTLS)
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error})
	client := plugin.NewClient(cfg)
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	conn := rpc.(*plugin.GRPCClient).Conn
	r := report{Pipelined: pipelined(conn, *n), Pingpong: pingpong(conn, *n)}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	client.Kill()
}
