// Command kvplugin is a go-plugin gRPC plugin serving tether.kv.v1.KV, used
// to test Tether's host against the reference Go implementation.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

func main() {
	versions := flag.String("versions", "1", "comma-separated protocol versions to offer")
	stdoutEarly := flag.Bool("stdout-before-handshake", false, `print "hello" to stdout before the handshake line`)
	exitEarly := flag.Int("exit-before-handshake", -1, `print "boom" to stderr and exit with this code before the handshake (negative: off)`)
	debug := flag.Bool("debug", false, "serve in go-plugin's test/debug mode: print a ReattachConfig as JSON (one line, "+
		"prefixed PLUGIN_REATTACH_CONFIG=) instead of a handshake line, and serve until SIGINT/SIGTERM")
	flag.Parse()

	if *exitEarly >= 0 {
		fmt.Fprint(os.Stderr, "boom\n")
		os.Exit(*exitEarly)
	}
	if *stdoutEarly {
		fmt.Fprint(os.Stdout, "hello\n")
	}

	// Built before Serve so it keeps the real stderr: Serve later replaces
	// os.Stdout and os.Stderr with pipes that feed GRPCStdio.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "kvplugin",
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})

	// Broker-served Adders still running; waited for (briefly) at exit so
	// their sockets get unlinked.
	var served sync.WaitGroup
	set := plugin.PluginSet{kvplug.Name: &kvplug.Plugin{
		NewServer: func(b *plugin.GRPCBroker) kvv1.KVServer {
			return &kvServer{broker: b, log: logger, served: &served, data: map[string][]byte{}}
		},
	}}
	vp := map[int]plugin.PluginSet{}
	for _, s := range strings.Split(*versions, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad -versions entry %q\n", s)
			os.Exit(2)
		}
		vp[v] = set
	}

	cfg := &plugin.ServeConfig{
		HandshakeConfig:  kvplug.Handshake,
		VersionedPlugins: vp,
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           logger,
	}
	if *debug {
		serveDebug(cfg)
	} else {
		plugin.Serve(cfg)
	}

	done := make(chan struct{})
	go func() { served.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// serveDebug serves as a provider with Debug: true does (go-plugin's
// ServeConfig.Test): no cookie check, no handshake line, the ReattachConfig
// printed for a host to attach to, and serving until interrupted.
func serveDebug(cfg *plugin.ServeConfig) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
	go plugin.Serve(cfg)
	select {
	case rc := <-reattach:
		j, _ := json.Marshal(map[string]any{
			"Protocol":        rc.Protocol,
			"ProtocolVersion": rc.ProtocolVersion,
			"Pid":             rc.Pid,
			"Test":            rc.Test,
			"Addr":            map[string]string{"Network": rc.Addr.Network(), "String": rc.Addr.String()},
		})
		fmt.Printf("PLUGIN_REATTACH_CONFIG=%s\n", j)
	case <-closed:
		return
	}
	<-closed
}

type kvServer struct {
	kvv1.UnimplementedKVServer
	broker *plugin.GRPCBroker
	log    hclog.Logger
	served *sync.WaitGroup

	mu   sync.Mutex
	data map[string][]byte
}

func (s *kvServer) Get(_ context.Context, r *kvv1.GetRequest) (*kvv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[r.Key]
	return &kvv1.GetResponse{Value: v, Found: ok}, nil
}

func (s *kvServer) Put(_ context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[r.Key] = r.Value
	return &kvv1.PutResponse{}, nil
}

func (s *kvServer) List(r *kvv1.ListRequest, stream grpc.ServerStreamingServer[kvv1.Entry]) error {
	s.mu.Lock()
	var entries []*kvv1.Entry
	for k, v := range s.data {
		if strings.HasPrefix(k, r.Prefix) {
			entries = append(entries, &kvv1.Entry{Key: k, Value: v})
		}
	}
	s.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	for _, e := range entries {
		if err := stream.Send(e); err != nil {
			return err
		}
	}
	return nil
}

func (s *kvServer) AddViaHost(ctx context.Context, r *kvv1.AddViaHostRequest) (*kvv1.AddViaHostResponse, error) {
	conn, err := s.broker.Dial(r.AdderBrokerId)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "broker dial %d: %v", r.AdderBrokerId, err)
	}
	defer conn.Close()
	resp, err := kvv1.NewAdderClient(conn).Add(ctx, &kvv1.AddRequest{A: r.A, B: r.B})
	if err != nil {
		return nil, err
	}
	return &kvv1.AddViaHostResponse{Sum: resp.Sum}, nil
}

func (s *kvServer) OpenAdder(context.Context, *kvv1.OpenAdderRequest) (*kvv1.OpenAdderResponse, error) {
	id := s.broker.NextId()
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		kvplug.ServeAdder(s.broker, id)
	}()
	return &kvv1.OpenAdderResponse{BrokerId: id}, nil
}

func (s *kvServer) Emit(_ context.Context, r *kvv1.EmitRequest) (*kvv1.EmitResponse, error) {
	var level hclog.Level
	if r.LogLevel != "" {
		switch r.LogLevel {
		case "trace", "debug", "info", "warn", "error":
			level = hclog.LevelFromString(r.LogLevel)
		default:
			return nil, status.Errorf(codes.InvalidArgument, "unknown log_level %q", r.LogLevel)
		}
	}
	// os.Stdout and os.Stderr are read at call time: after the handshake they
	// are the pipes go-plugin forwards over GRPCStdio.
	if r.Stdout != "" {
		fmt.Fprint(os.Stdout, r.Stdout)
	}
	if r.Stderr != "" {
		fmt.Fprint(os.Stderr, r.Stderr)
	}
	if r.LogLevel != "" {
		s.log.Log(level, r.LogMessage, "source", "emit")
	}
	return &kvv1.EmitResponse{}, nil
}

func (s *kvServer) Sleep(ctx context.Context, r *kvv1.SleepRequest) (*kvv1.SleepResponse, error) {
	if r.ExitCode != 0 {
		os.Exit(int(r.ExitCode))
	}
	select {
	case <-time.After(time.Duration(r.Millis) * time.Millisecond):
		return &kvv1.SleepResponse{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
