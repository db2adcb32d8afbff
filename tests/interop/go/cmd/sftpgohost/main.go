// Command sftpgohost drives one SFTPGo plugin exactly the way SFTPGo does:
// go-plugin's client with sftpgo/sdk's own Handshake, PluginMap and gRPC
// client for the type, SkipHostEnv and the environment SFTPGo would build,
// gRPC only, optional AutoMTLS. It calls every RPC of the type with fixed,
// field-rich inputs, checks each answer against the reference behaviour of
// cmd/sftpgo-plugins, kills the plugin and prints one JSON report:
//
//	sftpgohost -type auth|notifier|kms|ipfilter|eventsearcher [flags] -- <cmd> [args...]
//
// Exit status: 0 when the report's "ok" is true, 1 otherwise, 2 on bad usage.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/auth"
	"github.com/sftpgo/sdk/plugin/eventsearcher"
	"github.com/sftpgo/sdk/plugin/ipfilter"
	"github.com/sftpgo/sdk/plugin/kms"
	"github.com/sftpgo/sdk/plugin/notifier"
)

// suite is what the host knows about one plugin type.
type suite struct {
	handshake plugin.HandshakeConfig
	plugins   map[string]plugin.Plugin
	name      string
	run       func(raw any, r *recorder) error
}

var suites = map[string]suite{
	"auth":          {auth.Handshake, auth.PluginMap, auth.PluginName, runAuth},
	"notifier":      {notifier.Handshake, notifier.PluginMap, notifier.PluginName, runNotifier},
	"kms":           {kms.Handshake, kms.PluginMap, kms.PluginName, runKMS},
	"ipfilter":      {ipfilter.Handshake, ipfilter.PluginMap, ipfilter.PluginName, runIPFilter},
	"eventsearcher": {eventsearcher.Handshake, eventsearcher.PluginMap, eventsearcher.PluginName, runSearcher},
}

// report is the JSON printed on stdout.
type report struct {
	Type     string    `json:"type"`
	OK       bool      `json:"ok"`
	AutoMTLS bool      `json:"automtls"`
	Start    startInfo `json:"start"`
	Calls    []call    `json:"calls"`
	Kill     *killInfo `json:"kill"`
	Error    string    `json:"error,omitempty"`
}

type startInfo struct {
	OK         bool    `json:"ok"`
	Protocol   string  `json:"protocol,omitempty"`
	Version    int     `json:"version,omitempty"`
	Error      string  `json:"error,omitempty"`
	DurationMs float64 `json:"duration_ms"`
}

type killInfo struct {
	DurationMs float64 `json:"duration_ms"`
	Graceful   bool    `json:"graceful"`
	Exited     bool    `json:"exited"`
}

// call is one RPC made through the sdk's client.
type call struct {
	RPC      string  `json:"rpc"`
	Method   string  `json:"method"` // the sdk interface method the host called
	Request  any     `json:"request"`
	Response any     `json:"response"`
	Error    *string `json:"error"`
	// Expect is "ok" or "error: <substring>": the reference behaviour.
	Expect string `json:"expect"`
	// Mismatch says how the answer differs from Expect; empty when it matches.
	Mismatch string  `json:"mismatch,omitempty"`
	OK       bool    `json:"ok"`
	Ms       float64 `json:"duration_ms"`
}

// recorder collects calls.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

// expect describes the reference answer: wantErr is a substring the error
// must contain (empty: the call must succeed); check validates a successful
// response and returns what is wrong with it.
type expect struct {
	wantErr string
	check   func(resp any) string
}

// do runs one RPC. f returns the response as it should appear in the report.
func (r *recorder) do(rpc, method string, req any, ex expect, f func() (any, error)) {
	t := time.Now()
	resp, err := f()
	c := call{RPC: rpc, Method: method, Request: req, Response: resp, Ms: ms(time.Since(t)), Expect: "ok"}
	if ex.wantErr != "" {
		c.Expect = "error: " + ex.wantErr
	}
	switch {
	case err != nil:
		s := err.Error()
		c.Error, c.Response = &s, nil
		if ex.wantErr == "" {
			c.Mismatch = "unexpected error"
		} else if !strings.Contains(s, ex.wantErr) {
			c.Mismatch = fmt.Sprintf("error %q does not contain %q", s, ex.wantErr)
		}
	case ex.wantErr != "":
		c.Mismatch = "expected an error, got success"
	case ex.check != nil:
		c.Mismatch = ex.check(resp)
	}
	c.OK = c.Mismatch == ""
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// syncBuffer is a bytes.Buffer safe for concurrent use.
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

// pluginEnv builds the plugin's environment as SFTPGo 2.7.99-dev does
// (internal/plugin Config.getCommand): start empty; env_prefix "" means the
// upper-cased base name of cmd without its extension, '-' -> '_', plus "_";
// "none" means no prefix; "*" means the whole environment (and nothing
// else); then NAME=<value or empty> for each name in env_vars. go-plugin
// appends its own variables after these.
func pluginEnv(cmd, prefix string, vars []string) []string {
	env := []string{}
	switch prefix {
	case "none":
		prefix = ""
	case "":
		base := filepath.Base(cmd)
		base = strings.TrimSuffix(base, filepath.Ext(base))
		prefix = strings.ReplaceAll(strings.ToUpper(base)+"_", "-", "_")
	case "*":
		return append(env, os.Environ()...)
	}
	if prefix != "" {
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, prefix) {
				env = append(env, kv)
			}
		}
	}
	for _, name := range vars {
		env = append(env, name+"="+os.Getenv(name))
	}
	return env
}

func main() {
	typ := flag.String("type", "", "plugin type: auth, notifier, kms, ipfilter or eventsearcher")
	autoMTLS := flag.Bool("automtls", false, "negotiate mTLS with the plugin (SFTPGo's auto_mtls)")
	envPrefix := flag.String("env-prefix", "", `SFTPGo's env_prefix: "" = derived from the command name, "none", "*" or a prefix`)
	envVars := flag.String("env-vars", "", "SFTPGo's env_vars: comma-separated names of host variables to pass")
	sum := flag.String("sha256", "", "SFTPGo's sha256sum: hex SHA-256 the command must have")
	timeout := flag.Duration("timeout", 90*time.Second, "overall limit; the plugin is killed when it runs out")
	logLevel := flag.String("log-level", "debug", "level of the go-plugin host log written to stderr")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sftpgohost -type <type> [flags] -- <cmd> [args...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	s, known := suites[*typ]
	if !known || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}

	args := flag.Args()
	cmd := exec.Command(args[0], args[1:]...)
	var vars []string
	if *envVars != "" {
		vars = strings.Split(*envVars, ",")
	}
	cmd.Env = pluginEnv(args[0], *envPrefix, vars)

	var secure *plugin.SecureConfig
	if *sum != "" {
		checksum, err := hex.DecodeString(*sum)
		if err != nil {
			fmt.Fprintf(os.Stderr, "invalid -sha256: %v\n", err)
			os.Exit(2)
		}
		secure = &plugin.SecureConfig{Checksum: checksum, Hash: sha256.New()}
	}

	hostLog := &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  s.handshake,
		Plugins:          s.plugins,
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         *autoMTLS,
		SecureConfig:     secure,
		Managed:          false,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "plugins." + *typ,
			Level:  hclog.LevelFromString(*logLevel),
			Output: io.MultiWriter(hostLog, os.Stderr),
		}),
	})

	rep := &report{Type: *typ, AutoMTLS: *autoMTLS}
	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.Now()
		raw, err := dispense(client, s.name)
		rep.Start.DurationMs = ms(time.Since(t))
		if err != nil {
			rep.Start.Error = err.Error()
			return
		}
		rep.Start.OK = true
		rep.Start.Protocol = string(client.Protocol())
		rep.Start.Version = client.NegotiatedVersion()
		if err := s.run(raw, rec); err != nil {
			rep.Error = err.Error()
		}
	}()
	select {
	case <-done:
	case <-time.After(*timeout):
		rep.Error = fmt.Sprintf("overall timeout of %s exceeded", *timeout)
		if p := cmd.Process; p != nil {
			_ = p.Kill()
		}
	}

	// Kill as SFTPGo's Cleanup does; bounded in case a stuck run holds it.
	t := time.Now()
	killed := make(chan struct{})
	go func() { client.Kill(); close(killed) }()
	select {
	case <-killed:
	case <-time.After(10 * time.Second):
		if p := cmd.Process; p != nil {
			_ = p.Kill()
		}
		rep.Error = strings.TrimPrefix(rep.Error+"; client.Kill did not return within 10s", "; ")
	}
	rep.Kill = &killInfo{
		DurationMs: ms(time.Since(t)),
		Graceful:   !strings.Contains(hostLog.String(), "plugin failed to exit gracefully"),
		Exited:     client.Exited(),
	}

	rec.mu.Lock()
	rep.Calls = slices.Clone(rec.calls)
	rec.mu.Unlock()
	rep.OK = rep.Start.OK && rep.Error == "" && len(rep.Calls) > 0 && rep.Kill.Graceful && rep.Kill.Exited
	for _, c := range rep.Calls {
		rep.OK = rep.OK && c.OK
	}
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
	if !rep.OK {
		os.Exit(1)
	}
}

func dispense(client *plugin.Client, name string) (any, error) {
	rpc, err := client.Client()
	if err != nil {
		return nil, err
	}
	return rpc.Dispense(name)
}

// jsonEqual reports how got (JSON bytes) differs from want (a Go value that
// marshals to the expected JSON); empty when they are equal as JSON values.
func jsonEqual(got []byte, want any) string {
	w, _ := json.Marshal(want)
	var gv, wv any
	if err := json.Unmarshal(got, &gv); err != nil {
		return fmt.Sprintf("response is not JSON (%v): %q", err, got)
	}
	_ = json.Unmarshal(w, &wv)
	gn, _ := json.Marshal(gv) // map keys come out sorted: a canonical form
	wn, _ := json.Marshal(wv)
	if !bytes.Equal(gn, wn) {
		return fmt.Sprintf("got %s, want %s", gn, wn)
	}
	return ""
}
