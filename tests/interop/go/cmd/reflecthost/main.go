// Command reflecthost is a go-plugin host that launches a KV plugin and lists
// its services and methods with grpc-go's server-reflection client stubs
// (google.golang.org/grpc/reflection/grpc_reflection_v1 and v1alpha), then
// prints one JSON report on stdout and kills the plugin.
//
//	reflecthost [-automtls=true] -- <cmd> [args...]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	rv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"tether.dev/interop/internal/kvplug"
)

type listing struct {
	Services []string            `json:"services"`
	Methods  map[string][]string `json:"methods"`
	Error    string              `json:"error,omitempty"`
}

type report struct {
	V1      listing `json:"v1"`
	V1alpha listing `json:"v1alpha"`
}

// exchange sends one request on a fresh reflection stream and returns the answer.
type exchange func(ctx context.Context, listServices bool, symbol string) (services []string, files [][]byte, err error)

func v1Exchange(conn *grpc.ClientConn) exchange {
	return func(ctx context.Context, list bool, symbol string) ([]string, [][]byte, error) {
		stream, err := rv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, nil, err
		}
		req := &rv1.ServerReflectionRequest{}
		if list {
			req.MessageRequest = &rv1.ServerReflectionRequest_ListServices{ListServices: ""}
		} else {
			req.MessageRequest = &rv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}
		}
		if err := stream.Send(req); err != nil {
			return nil, nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, err
		}
		_ = stream.CloseSend()
		if e := resp.GetErrorResponse(); e != nil {
			return nil, nil, fmt.Errorf("reflection error %d: %s", e.ErrorCode, e.ErrorMessage)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		return names, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), nil
	}
}

func v1alphaExchange(conn *grpc.ClientConn) exchange {
	return func(ctx context.Context, list bool, symbol string) ([]string, [][]byte, error) {
		stream, err := rv1alpha.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, nil, err
		}
		req := &rv1alpha.ServerReflectionRequest{}
		if list {
			req.MessageRequest = &rv1alpha.ServerReflectionRequest_ListServices{ListServices: ""}
		} else {
			req.MessageRequest = &rv1alpha.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}
		}
		if err := stream.Send(req); err != nil {
			return nil, nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, nil, err
		}
		_ = stream.CloseSend()
		if e := resp.GetErrorResponse(); e != nil {
			return nil, nil, fmt.Errorf("reflection error %d: %s", e.ErrorCode, e.ErrorMessage)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		return names, resp.GetFileDescriptorResponse().GetFileDescriptorProto(), nil
	}
}

// list asks for the services, then for each service's file, and resolves the
// descriptors with protodesc to list each service's methods.
func list(ex exchange) listing {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := listing{Methods: map[string][]string{}}
	services, _, err := ex(ctx, true, "")
	if err != nil {
		out.Error = err.Error()
		return out
	}
	sort.Strings(services)
	out.Services = services
	for _, name := range services {
		_, raw, err := ex(ctx, false, name)
		if err != nil {
			out.Error = fmt.Sprintf("%s: %v", name, err)
			return out
		}
		set := &descriptorpb.FileDescriptorSet{}
		for _, b := range raw {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, fd); err != nil {
				out.Error = fmt.Sprintf("%s: %v", name, err)
				return out
			}
			set.File = append(set.File, fd)
		}
		files, err := protodesc.NewFiles(set)
		if err != nil {
			out.Error = fmt.Sprintf("%s: %v", name, err)
			return out
		}
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			out.Error = fmt.Sprintf("%s: %v", name, err)
			return out
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			out.Error = fmt.Sprintf("%s is not a service", name)
			return out
		}
		methods := []string{}
		for i := 0; i < sd.Methods().Len(); i++ {
			methods = append(methods, string(sd.Methods().Get(i).Name()))
		}
		out.Methods[name] = methods
	}
	return out
}


func main() {
	autoMTLS := flag.Bool("automtls", true, "negotiate mTLS with the plugin (go-plugin AutoMTLS)")
	flag.Parse()
	argv := flag.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "usage: reflecthost [-automtls=bool] -- <cmd> [args...]")
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
	r := report{V1: list(v1Exchange(conn)), V1alpha: list(v1alphaExchange(conn))}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	client.Kill()
}
