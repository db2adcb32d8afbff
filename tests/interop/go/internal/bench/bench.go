// Package bench is the Go reference measurement for Tether's benchmark: how
// long a plugin takes to answer its first call, unary latency, and
// throughput under concurrency, all through go-plugin's own host.
package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
	"tether.dev/interop/internal/kvplug"
)

type Options struct {
	N           int           // sequential Get calls measured
	Warmup      int           // Get calls before measuring
	Concurrency int           // goroutines in the throughput phase
	Duration    time.Duration // length of the throughput phase
	LargeBytes  int           // size of the value behind the large-answer phase (0: no such phase)
	LargeN      int           // Get calls of that value timed
}

type Result struct {
	SpawnToFirstCallMs float64 `json:"spawn_to_first_call_ms"`
	SeqP50Us           float64 `json:"seq_p50_us"`
	SeqP99Us           float64 `json:"seq_p99_us"`
	CallsPerSec        float64 `json:"calls_per_sec"`
	LargeP50Ms         float64 `json:"large_p50_ms,omitempty"`
	LargeBytes         int     `json:"large_bytes,omitempty"`
	N                  int     `json:"n"`
	Concurrency        int     `json:"concurrency"`
}

// Run starts the plugin behind c (which must not be started yet), measures,
// and leaves the plugin running: the caller kills it.
func Run(ctx context.Context, c *plugin.Client, o Options) (*Result, error) {
	res := &Result{N: o.N, Concurrency: o.Concurrency}

	t0 := time.Now()
	rpc, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	raw, err := rpc.Dispense(kvplug.Name)
	if err != nil {
		return nil, fmt.Errorf("dispense: %w", err)
	}
	kv := raw.(*kvplug.Client).KV
	get := &kvv1.GetRequest{Key: "bench"}
	if _, err := kv.Get(ctx, get); err != nil {
		return nil, fmt.Errorf("first get: %w", err)
	}
	res.SpawnToFirstCallMs = ms(time.Since(t0))

	value := make([]byte, 64)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: "bench", Value: value}); err != nil {
		return nil, fmt.Errorf("put: %w", err)
	}
	for range o.Warmup {
		if _, err := kv.Get(ctx, get); err != nil {
			return nil, fmt.Errorf("warmup get: %w", err)
		}
	}

	lat := make([]time.Duration, o.N)
	for i := range lat {
		t := time.Now()
		if _, err := kv.Get(ctx, get); err != nil {
			return nil, fmt.Errorf("sequential get: %w", err)
		}
		lat[i] = time.Since(t)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.SeqP50Us = us(percentile(lat, 50))
	res.SeqP99Us = us(percentile(lat, 99))

	var calls atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(o.Duration)
	start := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := kv.Get(ctx, get); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("concurrent get: %w", firstErr)
	}
	res.CallsPerSec = round(float64(calls.Load()) / time.Since(start).Seconds())

	if o.LargeBytes > 0 && o.LargeN > 0 {
		// Terraform-style large answers: the host receives one big message (a provider schema) per call.
		big := make([]byte, o.LargeBytes)
		for i := range big {
			big[i] = byte(i * 7)
		}
		if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: "large", Value: big}); err != nil {
			return nil, fmt.Errorf("large put: %w", err)
		}
		getLarge := &kvv1.GetRequest{Key: "large"}
		if _, err := kv.Get(ctx, getLarge); err != nil { // warm-up: buffers and windows grown once
			return nil, fmt.Errorf("large get: %w", err)
		}
		large := make([]time.Duration, o.LargeN)
		for i := range large {
			t := time.Now()
			r, err := kv.Get(ctx, getLarge)
			if err != nil {
				return nil, fmt.Errorf("large get: %w", err)
			}
			large[i] = time.Since(t)
			if len(r.Value) != o.LargeBytes {
				return nil, fmt.Errorf("large get: %d bytes, want %d", len(r.Value), o.LargeBytes)
			}
		}
		sort.Slice(large, func(i, j int) bool { return large[i] < large[j] })
		res.LargeP50Ms = ms(percentile(large, 50))
		res.LargeBytes = o.LargeBytes
	}
	return res, nil
}

// percentile uses the nearest-rank method on sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }
func us(d time.Duration) float64 { return round(float64(d) / float64(time.Microsecond)) }

// round keeps two decimals so the JSON stays readable.
func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
