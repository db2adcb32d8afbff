package main

import (
	"fmt"

	"github.com/sftpgo/sdk/plugin/notifier"
)

// Fixed events, every field set. Timestamps are Unix nanoseconds and exceed
// 2^53 on purpose.
var (
	fsEvent = notifier.FsEvent{
		Action:            "rename",
		Username:          "alice",
		Path:              "/srv/alice/in/report.csv",
		TargetPath:        "/srv/alice/archive/report-2026.csv",
		VirtualPath:       "/in/report.csv",
		VirtualTargetPath: "/archive/report-2026.csv",
		SSHCmd:            "sftp-server",
		FileSize:          9876543210,
		FsProvider:        1,
		Bucket:            "tether-bucket",
		Endpoint:          "https://s3.example.test:9000",
		Status:            1,
		Protocol:          "SFTP",
		IP:                "198.51.100.7",
		SessionID:         "sess-0123456789abcdef",
		Timestamp:         1767225600123456789,
		OpenFlags:         577,
		Role:              "operators",
		Elapsed:           1534,
		Metadata:          map[string]string{"content-type": "text/csv", "x-origin": "sftpgohost", "empty": ""},
	}
	providerEvent = notifier.ProviderEvent{
		Action:     "update",
		Username:   "admin",
		ObjectType: "user",
		ObjectName: "alice",
		IP:         "2001:db8::42",
		ObjectData: []byte(userIn),
		Timestamp:  1767225601987654321,
		Role:       "admins",
	}
	logEvent = notifier.LogEvent{
		Timestamp: 1767225602000000007,
		Event:     notifier.LogEventTypeLoginFailed,
		Protocol:  "FTP",
		Username:  "mallory",
		IP:        "203.0.113.66",
		Message:   "login failed: invalid credentials",
		Role:      "guests",
	}
)

func fsEventJSON(e notifier.FsEvent) map[string]any {
	return map[string]any{
		"timestamp": e.Timestamp, "action": e.Action, "username": e.Username, "fs_path": e.Path,
		"fs_target_path": e.TargetPath, "ssh_cmd": e.SSHCmd, "file_size": e.FileSize, "protocol": e.Protocol,
		"status": e.Status, "ip": e.IP, "virtual_path": e.VirtualPath, "virtual_target_path": e.VirtualTargetPath,
		"session_id": e.SessionID, "fs_provider": e.FsProvider, "bucket": e.Bucket, "endpoint": e.Endpoint,
		"open_flags": e.OpenFlags, "role": e.Role, "elapsed": e.Elapsed, "metadata": e.Metadata,
	}
}

func runNotifier(raw any, r *recorder) error {
	n, ok := raw.(notifier.Notifier)
	if !ok {
		return fmt.Errorf("dispensed %T does not implement notifier.Notifier", raw)
	}
	r.do("SendFsEvent", "NotifyFsEvent", fsEventJSON(fsEvent), expect{}, func() (any, error) {
		e := fsEvent
		return map[string]any{}, n.NotifyFsEvent(&e)
	})
	r.do("SendProviderEvent", "NotifyProviderEvent", map[string]any{
		"timestamp": providerEvent.Timestamp, "action": providerEvent.Action,
		"object_type": providerEvent.ObjectType, "username": providerEvent.Username, "ip": providerEvent.IP,
		"object_name": providerEvent.ObjectName, "object_data": string(providerEvent.ObjectData),
		"role": providerEvent.Role,
	}, expect{}, func() (any, error) {
		e := providerEvent
		return map[string]any{}, n.NotifyProviderEvent(&e)
	})
	r.do("SendLogEvent", "NotifyLogEvent", map[string]any{
		"timestamp": logEvent.Timestamp, "event": int(logEvent.Event), "username": logEvent.Username,
		"protocol": logEvent.Protocol, "ip": logEvent.IP, "message": logEvent.Message, "role": logEvent.Role,
	}, expect{}, func() (any, error) {
		e := logEvent
		return map[string]any{}, n.NotifyLogEvent(&e)
	})
	return nil
}
