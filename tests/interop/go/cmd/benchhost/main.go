// Command benchhost is the Go reference for Tether's benchmark: it hosts a KV
// plugin with go-plugin, measures it and prints one JSON object on stdout.
//
//	benchhost [-automtls=true] [-n 3000] [-warmup 200] [-concurrency 16] [-duration 3s]
//	          [-large-bytes 7340032 -large-n 10] -- <cmd> [args...]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"tether.dev/interop/internal/bench"
	"tether.dev/interop/internal/kvplug"
)

func main() {
	autoMTLS := flag.Bool("automtls", false, "negotiate mTLS with the plugin (go-plugin AutoMTLS)")
	var o bench.Options
	flag.IntVar(&o.N, "n", 3000, "sequential calls measured")
	flag.IntVar(&o.Warmup, "warmup", 200, "calls before measuring")
	flag.IntVar(&o.Concurrency, "concurrency", 16, "concurrent callers in the throughput phase")
	flag.DurationVar(&o.Duration, "duration", 3*time.Second, "length of the throughput phase")
	flag.IntVar(&o.LargeBytes, "large-bytes", 0, "size of the value behind the large-answer phase (0: skip it)")
	flag.IntVar(&o.LargeN, "large-n", 10, "Get calls of the large value timed")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: benchhost [flags] -- <cmd> [args...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 || o.N < 1 || o.Concurrency < 1 {
		flag.Usage()
		os.Exit(2)
	}

	cfg := kvplug.HostConfig(flag.Args(), *autoMTLS)
	// Plugin logs still reach stderr, but only from Info up, so logging does
	// not weigh on the measurement.
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "benchhost", Level: hclog.Info, Output: os.Stderr})
	client := plugin.NewClient(cfg)

	// On SIGINT/SIGTERM the calls are cancelled and the plugin still gets
	// killed below, so it is not left running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	res, err := bench.Run(ctx, client, o)
	cancel()
	stop()
	client.Kill()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchhost:", err)
		os.Exit(1)
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
}
