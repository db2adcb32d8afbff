// Command crashnotifier is an SFTPGo notifier plugin (sftpgo/sdk) that
// panics, taking its process down, on a marked event: a filesystem event
// whose username starts with "poison". Every other filesystem event is appended as one
// line "<username>\n" to the file named by -out once accepted, so a test can
// check that good events arrive, in order, across the crashes.
//
//	crashnotifier -out FILE
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/notifier"
)

type crasher struct {
	out string
	mu  sync.Mutex
}

func (c *crasher) NotifyFsEvent(e *notifier.FsEvent) error {
	if strings.HasPrefix(e.Username, "poison") {
		panic(fmt.Sprintf("poison event from %s", e.Username))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.OpenFile(c.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%s\n", e.Username); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *crasher) NotifyProviderEvent(*notifier.ProviderEvent) error { return nil }

func (c *crasher) NotifyLogEvent(*notifier.LogEvent) error { return nil }

func main() {
	c := &crasher{}
	flag.StringVar(&c.out, "out", "", "append the username of each accepted filesystem event to this file")
	flag.Parse()
	if c.out == "" {
		fmt.Fprintln(os.Stderr, "usage: crashnotifier -out FILE")
		os.Exit(2)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: notifier.Handshake,
		Plugins:         map[string]plugin.Plugin{notifier.PluginName: &notifier.Plugin{Impl: c}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          hclog.New(&hclog.LoggerOptions{Name: "crashnotifier", JSONFormat: true, Output: os.Stderr}),
	})
}
