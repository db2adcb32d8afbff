// Command sftpgo-plugins is a reference SFTPGo plugin for Tether's interop
// tests. One binary serves any of the five live SFTPGo plugin types through
// sftpgo/sdk's own plugin packages (the same server code every official
// SFTPGo plugin runs), with small deterministic behaviours so that a host
// under test can check every RPC and every field:
//
//	sftpgo-plugins auth|notifier|kms|ipfilter|eventsearcher [flags]
//
// See tests/interop/go/README.md for the behaviour of each RPC. Like any
// go-plugin plugin it refuses to run unless started by a host that sets the
// type's magic cookie.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/auth"
	"github.com/sftpgo/sdk/plugin/eventsearcher"
	"github.com/sftpgo/sdk/plugin/ipfilter"
	"github.com/sftpgo/sdk/plugin/kms"
	"github.com/sftpgo/sdk/plugin/notifier"
)

const usage = `usage: sftpgo-plugins <type> [flags]

types:
  auth
  notifier [-out FILE] [-fail-first N] [-delay-ms N]
  kms
  ipfilter
  eventsearcher
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	typ := os.Args[1]
	fs := flag.NewFlagSet("sftpgo-plugins "+typ, flag.ExitOnError)
	// go-plugin's host parses JSON lines on our stderr as log entries.
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "sftpgo-plugins." + typ,
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     os.Stderr,
	})

	var (
		handshake plugin.HandshakeConfig
		name      string
		p         plugin.Plugin
	)
	switch typ {
	case "auth":
		fs.Parse(os.Args[2:])
		handshake, name, p = auth.Handshake, auth.PluginName, &auth.Plugin{Impl: &authenticator{log: log}}
	case "notifier":
		n := &eventRecorder{log: log}
		fs.StringVar(&n.out, "out", "", "append one JSON line per received event to this file")
		fs.IntVar(&n.failFirst, "fail-first", 0, "make the first N calls fail (after recording them)")
		fs.IntVar(&n.delayMs, "delay-ms", 0, "sleep this many milliseconds before answering each call")
		fs.Parse(os.Args[2:])
		handshake, name, p = notifier.Handshake, notifier.PluginName, &notifier.Plugin{Impl: n}
	case "kms":
		fs.Parse(os.Args[2:])
		handshake, name, p = kms.Handshake, kms.PluginName, &kms.Plugin{Impl: &reversingKMS{log: log}}
	case "ipfilter":
		fs.Parse(os.Args[2:])
		handshake, name, p = ipfilter.Handshake, ipfilter.PluginName, &ipfilter.Plugin{Impl: &filter{log: log}}
	case "eventsearcher":
		fs.Parse(os.Args[2:])
		handshake, name, p = eventsearcher.Handshake, eventsearcher.PluginName, &eventsearcher.Plugin{Impl: &echoSearcher{log: log}}
	default:
		fmt.Fprintf(os.Stderr, "unknown plugin type %q\n%s", typ, usage)
		os.Exit(2)
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments %q\n%s", fs.Args(), usage)
		os.Exit(2)
	}

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         map[string]plugin.Plugin{name: p},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log,
	})
}

// mustJSON marshals values built by this program (maps, slices, strings,
// numbers), which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// orEmpty turns a nil slice (an absent repeated field) into an empty one so
// it is echoed as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// i64 renders an int64 the way protobuf's JSON mapping does (a decimal
// string), so JavaScript readers do not lose precision on nanosecond
// timestamps.
func i64(v int64) string { return fmt.Sprint(v) }
