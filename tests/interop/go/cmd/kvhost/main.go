// Command kvhost is a go-plugin host that launches any KV plugin (usually
// Tether's TypeScript one), runs a scenario against it and prints one JSON
// report on stdout.
//
//	kvhost [-automtls=true] [-mux] [-scenario all|ping|bench] -- <cmd> [args...]
//	kvhost -reattach '<ReattachConfig JSON>' [-scenario all|ping]
//
// With -reattach it launches nothing: it attaches to a running plugin (one
// served in debug mode), skips the stdio and logs steps (a reattached host
// reads neither stream) and checks that Kill leaves a test-mode plugin running.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/bench"
	"tether.dev/interop/internal/kvplug"
)

type step struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type output struct {
	Steps   []step        `json:"steps"`
	OK      bool          `json:"ok"`
	Bench   *bench.Result `json:"bench,omitempty"`
	HostLog string        `json:"host_log"`
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type host struct {
	client  *plugin.Client
	cmd     *exec.Cmd
	hostLog *syncBuffer
	stdout  *syncBuffer
	stderr  *syncBuffer
	kv      *kvplug.Client
	served  sync.WaitGroup // host-side broker servers
	// reattach is set when the host attached to a running plugin.
	reattach *plugin.ReattachConfig

	mu    sync.Mutex
	steps []step
	bench *bench.Result
}

func main() {
	autoMTLS := flag.Bool("automtls", false, "negotiate mTLS with the plugin (go-plugin AutoMTLS)")
	mux := flag.Bool("mux", false, "ask for gRPC broker multiplexing (GRPCBrokerMultiplex: true)")
	scenario := flag.String("scenario", "all", "all, ping or bench")
	reattach := flag.String("reattach", "", "attach to this running plugin (go-plugin ReattachConfig as JSON, "+
		`{"Protocol":"grpc","ProtocolVersion":1,"Pid":N,"Test":true,"Addr":{"Network":"unix","String":"/path"}}`+
		", or with the PLUGIN_REATTACH_CONFIG= prefix) instead of launching one")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit; the plugin is killed when it runs out")
	var bo bench.Options
	flag.IntVar(&bo.N, "n", 3000, "bench: sequential calls measured")
	flag.IntVar(&bo.Warmup, "warmup", 200, "bench: calls before measuring")
	flag.IntVar(&bo.Concurrency, "concurrency", 16, "bench: concurrent callers")
	flag.DurationVar(&bo.Duration, "duration", 3*time.Second, "bench: length of the throughput phase")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: kvhost [flags] -- <cmd> [args...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if (flag.NArg() == 0) == (*reattach == "") || !slices.Contains([]string{"all", "ping", "bench"}, *scenario) {
		flag.Usage()
		os.Exit(2)
	}

	h := &host{hostLog: &syncBuffer{}, stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	var cfg *plugin.ClientConfig
	if *reattach != "" {
		rc, err := parseReattach(*reattach)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kvhost: -reattach: %v\n", err)
			os.Exit(2)
		}
		cfg = kvplug.HostConfig([]string{"unused"}, false)
		cfg.Cmd = nil
		cfg.Reattach = rc
		h.reattach = rc
	} else {
		cfg = kvplug.HostConfig(flag.Args(), *autoMTLS)
	}
	cfg.GRPCBrokerMultiplex = *mux
	cfg.SyncStdout = h.stdout
	cfg.SyncStderr = h.stderr
	cfg.StartTimeout = 20 * time.Second
	cfg.Logger = hclog.New(&hclog.LoggerOptions{
		Name:       "kvhost",
		Level:      hclog.Trace,
		JSONFormat: true,
		Output:     io.MultiWriter(h.hostLog, os.Stderr),
	})
	h.cmd = cfg.Cmd
	h.client = plugin.NewClient(cfg)

	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(*scenario, bo)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(*timeout):
		h.abort(fmt.Sprintf("overall timeout of %s exceeded", *timeout))
	case s := <-sig:
		h.abort("interrupted by " + s.String())
	}
	os.Exit(h.report())
}

func (h *host) run(scenario string, bo bench.Options) {
	if scenario == "bench" {
		h.step("bench", func(ctx context.Context) (string, error) {
			res, err := bench.Run(ctx, h.client, bo)
			if err != nil {
				return "", err
			}
			h.mu.Lock()
			h.bench = res
			h.mu.Unlock()
			j, _ := json.Marshal(res)
			return string(j), nil
		}, 10*time.Minute)
	} else if h.step("start", h.start, 30*time.Second) {
		if scenario == "all" {
			h.step("put_get", h.putGet, 10*time.Second)
			h.step("list", h.list, 10*time.Second)
			h.step("broker_host_serves", h.brokerHostServes, 10*time.Second)
			h.step("broker_plugin_serves", h.brokerPluginServes, 10*time.Second)
			if h.reattach == nil {
				h.step("stdio", h.stdio, 10*time.Second)
				h.step("logs", h.logs, 10*time.Second)
			}
		}
		h.step("ping", h.ping, 10*time.Second)
	}
	h.step("kill", h.kill, 30*time.Second)
}

// step runs f with a deadline, records the outcome and reports success.
func (h *host) step(name string, f func(context.Context) (string, error), limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	detail, err := f(ctx)
	if err != nil {
		detail = err.Error()
	}
	h.record(step{Name: name, OK: err == nil, Detail: detail})
	return err == nil
}

func (h *host) record(s step) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.steps = append(h.steps, s)
}

// abort ends a run that is stuck. It first asks go-plugin for its usual
// shutdown; if that hangs too, it kills the plugin process outright.
func (h *host) abort(reason string) {
	h.record(step{Name: "abort", OK: false, Detail: reason})
	killed := make(chan struct{})
	go func() { h.client.Kill(); close(killed) }()
	select {
	case <-killed:
		return
	case <-time.After(3 * time.Second):
	}
	// Best effort: go-plugin may still be starting the process.
	if h.cmd == nil {
		return
	}
	if p := h.cmd.Process; p != nil {
		_ = p.Kill()
	}
	select {
	case <-killed:
	case <-time.After(5 * time.Second):
	}
}

func (h *host) report() int {
	waitTimeout(&h.served, time.Second)
	h.mu.Lock()
	out := output{Steps: slices.Clone(h.steps), OK: len(h.steps) > 0, Bench: h.bench}
	h.mu.Unlock()
	for _, s := range out.Steps {
		out.OK = out.OK && s.OK
	}
	out.HostLog = h.hostLog.String()
	j, _ := json.Marshal(out)
	fmt.Println(string(j))
	if out.OK {
		return 0
	}
	return 1
}

func (h *host) start(context.Context) (string, error) {
	rpc, err := h.client.Client()
	if err != nil {
		return "", err
	}
	raw, err := rpc.Dispense(kvplug.Name)
	if err != nil {
		return "", err
	}
	h.kv = raw.(*kvplug.Client)
	return fmt.Sprintf("protocol=%s version=%d", h.client.Protocol(), h.client.NegotiatedVersion()), nil
}

func (h *host) putGet(ctx context.Context) (string, error) {
	if _, err := h.kv.KV.Put(ctx, &kvv1.PutRequest{Key: "a", Value: []byte("1")}); err != nil {
		return "", fmt.Errorf("put a: %w", err)
	}
	got, err := h.kv.KV.Get(ctx, &kvv1.GetRequest{Key: "a"})
	if err != nil {
		return "", fmt.Errorf("get a: %w", err)
	}
	if !got.Found || string(got.Value) != "1" {
		return "", fmt.Errorf("get a: found=%v value=%q, want found=true value=\"1\"", got.Found, got.Value)
	}
	miss, err := h.kv.KV.Get(ctx, &kvv1.GetRequest{Key: "missing"})
	if err != nil {
		return "", fmt.Errorf("get missing: %w", err)
	}
	if miss.Found {
		return "", fmt.Errorf("get missing: found=true value=%q", miss.Value)
	}
	return `a="1", missing not found`, nil
}

func (h *host) list(ctx context.Context) (string, error) {
	// Put out of order so the plugin has to sort; "a" (from put_get) must
	// be filtered out by the prefix.
	for _, kv := range [][2]string{{"p/c", "3"}, {"p/b", "2"}} {
		if _, err := h.kv.KV.Put(ctx, &kvv1.PutRequest{Key: kv[0], Value: []byte(kv[1])}); err != nil {
			return "", fmt.Errorf("put %s: %w", kv[0], err)
		}
	}
	stream, err := h.kv.KV.List(ctx, &kvv1.ListRequest{Prefix: "p/"})
	if err != nil {
		return "", err
	}
	var got []string
	for {
		e, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("recv after %v: %w", got, err)
		}
		got = append(got, e.Key+"="+string(e.Value))
	}
	want := []string{"p/b=2", "p/c=3"}
	if !slices.Equal(got, want) {
		return "", fmt.Errorf("list p/: got %v, want %v", got, want)
	}
	return strings.Join(got, ","), nil
}

func (h *host) brokerHostServes(ctx context.Context) (string, error) {
	id := h.kv.Broker.NextId()
	h.served.Add(1)
	go func() {
		defer h.served.Done()
		kvplug.ServeAdder(h.kv.Broker, id)
	}()
	resp, err := h.kv.KV.AddViaHost(ctx, &kvv1.AddViaHostRequest{AdderBrokerId: id, A: 2, B: 40})
	if err != nil {
		return "", fmt.Errorf("AddViaHost(id=%d): %w", id, err)
	}
	if resp.Sum != 42 {
		return "", fmt.Errorf("AddViaHost(id=%d, 2, 40) = %d, want 42", id, resp.Sum)
	}
	return fmt.Sprintf("broker id %d: 2+40=42", id), nil
}

func (h *host) brokerPluginServes(ctx context.Context) (string, error) {
	resp, err := h.kv.KV.OpenAdder(ctx, &kvv1.OpenAdderRequest{})
	if err != nil {
		return "", fmt.Errorf("OpenAdder: %w", err)
	}
	conn, err := h.kv.Broker.Dial(resp.BrokerId)
	if err != nil {
		return "", fmt.Errorf("broker dial %d: %w", resp.BrokerId, err)
	}
	defer conn.Close()
	sum, err := kvv1.NewAdderClient(conn).Add(ctx, &kvv1.AddRequest{A: 20, B: 22})
	if err != nil {
		return "", fmt.Errorf("Add via broker id %d: %w", resp.BrokerId, err)
	}
	if sum.Sum != 42 {
		return "", fmt.Errorf("Add(20, 22) = %d, want 42", sum.Sum)
	}
	return fmt.Sprintf("broker id %d: 20+22=42", resp.BrokerId), nil
}

func (h *host) stdio(ctx context.Context) (string, error) {
	if _, err := h.kv.KV.Emit(ctx, &kvv1.EmitRequest{Stdout: "out-line\n", Stderr: "err-line\n"}); err != nil {
		return "", err
	}
	ok := poll(2*time.Second, func() bool {
		return strings.Contains(h.stdout.String(), "out-line") && strings.Contains(h.stderr.String(), "err-line")
	})
	if !ok {
		return "", fmt.Errorf("after 2s: SyncStdout=%q SyncStderr=%q", h.stdout.String(), h.stderr.String())
	}
	return "out-line on SyncStdout, err-line on SyncStderr", nil
}

var levels = []string{"trace", "debug", "info", "warn", "error"}

func (h *host) logs(ctx context.Context) (string, error) {
	for _, l := range levels {
		if _, err := h.kv.KV.Emit(ctx, &kvv1.EmitRequest{LogLevel: l, LogMessage: "msg-" + l}); err != nil {
			return "", fmt.Errorf("emit %s: %w", l, err)
		}
	}
	var seen map[string]string // message -> @level
	allSeen := func() bool {
		seen = map[string]string{}
		for _, line := range strings.Split(h.hostLog.String(), "\n") {
			var e struct {
				Level   string `json:"@level"`
				Message string `json:"@message"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && strings.HasPrefix(e.Message, "msg-") {
				seen[e.Message] = e.Level
			}
		}
		for _, l := range levels {
			if _, ok := seen["msg-"+l]; !ok {
				return false
			}
		}
		return true
	}
	poll(2*time.Second, allSeen)
	var parts []string
	ok := true
	for _, l := range levels {
		got, found := seen["msg-"+l]
		if !found {
			got = "missing"
		}
		ok = ok && got == l
		parts = append(parts, fmt.Sprintf("msg-%s=%s", l, got))
	}
	detail := strings.Join(parts, " ")
	if !ok {
		return "", fmt.Errorf("levels in host log: %s", detail)
	}
	return detail, nil
}

func (h *host) ping(context.Context) (string, error) {
	rpc, err := h.client.Client()
	if err != nil {
		return "", err
	}
	if err := rpc.Ping(); err != nil {
		return "", err
	}
	return "health check SERVING", nil
}

func (h *host) kill(ctx context.Context) (string, error) {
	if h.reattach != nil {
		return h.killReattached(ctx)
	}
	// Without a successful Start (no address) go-plugin can only force-kill,
	// so the graceful-exit checks apply to started plugins only.
	started := h.client.ReattachConfig() != nil
	t := time.Now()
	h.client.Kill()
	d := time.Since(t)
	detail := fmt.Sprintf("duration_ms=%.1f", float64(d)/float64(time.Millisecond))
	if !started {
		return detail + " (plugin was not started)", nil
	}
	if strings.Contains(h.hostLog.String(), "plugin failed to exit gracefully") {
		return "", fmt.Errorf("%s: host logged \"plugin failed to exit gracefully\"", detail)
	}
	if !h.client.Exited() {
		return "", fmt.Errorf("%s: Exited() is false after Kill", detail)
	}
	return detail, nil
}

// killReattached checks go-plugin's Kill on a reattached plugin: in test
// mode it must leave the plugin running (the plugin is not this host's).
func (h *host) killReattached(context.Context) (string, error) {
	h.client.Kill()
	if !h.reattach.Test {
		return "killed (not test mode)", nil
	}
	if h.client.Exited() {
		return "", fmt.Errorf("Exited() is true after Kill of a test-mode plugin")
	}
	return "test mode: left running", nil
}

// parseReattach reads a ReattachConfig in the JSON shape Terraform's
// TF_REATTACH_PROVIDERS entries use.
func parseReattach(text string) (*plugin.ReattachConfig, error) {
	var j struct {
		Protocol        string
		ProtocolVersion int
		Pid             int
		Test            bool
		Addr            struct{ Network, String string }
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(text, "PLUGIN_REATTACH_CONFIG=")), &j); err != nil {
		return nil, err
	}
	var addr net.Addr
	switch j.Addr.Network {
	case "unix":
		addr = &net.UnixAddr{Net: "unix", Name: j.Addr.String}
	case "tcp":
		a, err := net.ResolveTCPAddr("tcp", j.Addr.String)
		if err != nil {
			return nil, err
		}
		addr = a
	default:
		return nil, fmt.Errorf("unknown Addr.Network %q", j.Addr.Network)
	}
	return &plugin.ReattachConfig{
		Protocol:        plugin.Protocol(j.Protocol),
		ProtocolVersion: j.ProtocolVersion,
		Pid:             j.Pid,
		Test:            j.Test,
		Addr:            addr,
	}, nil
}

// poll calls cond every 20ms until it holds or limit passes.
func poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitTimeout(wg *sync.WaitGroup, limit time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
