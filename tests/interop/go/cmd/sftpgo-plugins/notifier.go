package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/sftpgo/sdk/plugin/notifier"
)

// eventRecorder implements notifier.Notifier: it appends every call it
// receives to a JSON-lines file, then optionally sleeps and fails.
type eventRecorder struct {
	log       hclog.Logger
	out       string
	failFirst int
	delayMs   int

	mu    sync.Mutex
	calls int
}

// line is one record of the -out file. Event keys are the protobuf field
// names; int64 values are decimal strings and bytes are UTF-8 text.
type line struct {
	N      int            `json:"n"`
	RPC    string         `json:"rpc"`
	Failed bool           `json:"failed"`
	Event  map[string]any `json:"event"`
}

func (r *eventRecorder) NotifyFsEvent(e *notifier.FsEvent) error {
	metadata := e.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	return r.record("fs", map[string]any{
		"timestamp":           i64(e.Timestamp),
		"action":              e.Action,
		"username":            e.Username,
		"fs_path":             e.Path,
		"fs_target_path":      e.TargetPath,
		"ssh_cmd":             e.SSHCmd,
		"file_size":           i64(e.FileSize),
		"protocol":            e.Protocol,
		"status":              e.Status,
		"ip":                  e.IP,
		"virtual_path":        e.VirtualPath,
		"virtual_target_path": e.VirtualTargetPath,
		"session_id":          e.SessionID,
		"fs_provider":         e.FsProvider,
		"bucket":              e.Bucket,
		"endpoint":            e.Endpoint,
		"open_flags":          e.OpenFlags,
		"role":                e.Role,
		"elapsed":             i64(e.Elapsed),
		"metadata":            metadata,
	})
}

func (r *eventRecorder) NotifyProviderEvent(e *notifier.ProviderEvent) error {
	return r.record("provider", map[string]any{
		"timestamp":   i64(e.Timestamp),
		"action":      e.Action,
		"object_type": e.ObjectType,
		"username":    e.Username,
		"ip":          e.IP,
		"object_name": e.ObjectName,
		"object_data": string(e.ObjectData),
		"role":        e.Role,
	})
}

func (r *eventRecorder) NotifyLogEvent(e *notifier.LogEvent) error {
	return r.record("log", map[string]any{
		"timestamp": i64(e.Timestamp),
		"event":     int(e.Event),
		"username":  e.Username,
		"protocol":  e.Protocol,
		"ip":        e.IP,
		"message":   e.Message,
		"role":      e.Role,
	})
}

func (r *eventRecorder) record(rpc string, event map[string]any) error {
	r.mu.Lock()
	r.calls++
	n := r.calls
	fail := n <= r.failFirst
	var werr error
	if r.out != "" {
		b, _ := json.Marshal(line{N: n, RPC: rpc, Failed: fail, Event: event})
		werr = appendLine(r.out, b)
	}
	r.mu.Unlock()

	r.log.Info("event received", "n", n, "rpc", rpc, "failed", fail)
	if r.delayMs > 0 {
		time.Sleep(time.Duration(r.delayMs) * time.Millisecond)
	}
	if werr != nil {
		return fmt.Errorf("record event: %w", werr)
	}
	if fail {
		return fmt.Errorf("induced failure %d of %d", n, r.failFirst)
	}
	return nil
}

func appendLine(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
