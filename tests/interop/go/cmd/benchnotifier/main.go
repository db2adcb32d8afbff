// Command benchnotifier is the SFTPGo reference of Tether's notifier
// benchmark: it hosts one notifier plugin with go-plugin and the sftpgo sdk,
// as SFTPGo does (AutoMTLS, gRPC), and sends -events filesystem events the
// way SFTPGo's plugin manager does: one goroutine per event, no ordering, no
// bound on the sends in flight. It prints one JSON object: events sent,
// events the plugin acknowledged, failures and events per second.
//
//	benchnotifier [-events 20000] -- <cmd> [args...]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/sftpgo/sdk/plugin/notifier"
)

type result struct {
	Events     int     `json:"events"`
	Acked      int64   `json:"acked"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	EventsPerS float64 `json:"events_per_s"`
	FirstError string  `json:"first_error,omitempty"`
}

func main() {
	events := flag.Int("events", 20000, "fs events to send")
	flag.Parse()
	if flag.NArg() == 0 || *events < 1 {
		fmt.Fprintln(os.Stderr, "usage: benchnotifier [-events N] -- <cmd> [args...]")
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Env = os.Environ()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  notifier.Handshake,
		Plugins:          notifier.PluginMap,
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "benchnotifier", Level: hclog.Warn, Output: os.Stderr}),
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchnotifier: start:", err)
		os.Exit(1)
	}
	raw, err := rpc.Dispense(notifier.PluginName)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchnotifier: dispense:", err)
		os.Exit(1)
	}
	n := raw.(notifier.Notifier)
	// One event first: connection and plugin warm.
	if err := n.NotifyFsEvent(&notifier.FsEvent{Action: "upload", Username: "warmup", Timestamp: time.Now().UnixNano()}); err != nil {
		fmt.Fprintln(os.Stderr, "benchnotifier: first event:", err)
		os.Exit(1)
	}

	var acked, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *events {
		wg.Add(1)
		// As SFTPGo's notifierPlugin.sendFsEvent: a goroutine per event.
		go func(i int) {
			defer wg.Done()
			err := n.NotifyFsEvent(&notifier.FsEvent{
				Action: "upload", Username: "bench", VirtualPath: fmt.Sprintf("/f%d", i),
				FileSize: int64(i), Protocol: "SFTP", Timestamp: time.Now().UnixNano(),
			})
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			acked.Add(1)
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	res := result{Events: *events, Acked: acked.Load(), Failed: failed.Load(), Seconds: elapsed,
		EventsPerS: float64(acked.Load()) / elapsed}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
}
