package main

import (
	"fmt"

	"github.com/sftpgo/sdk/plugin/eventsearcher"
)

type searchResp struct {
	Data string `json:"data"`
}

var commonParams = eventsearcher.CommonSearchParams{
	StartTimestamp: 1767225600000000001,
	EndTimestamp:   1767311999999999999,
	Username:       "alice",
	IP:             "198.51.100.7",
	InstanceIDs:    []string{"node-a", "node-b", "node-c"},
	FromID:         "01JABCDEF0123456789XYZ",
	Limit:          250,
	Order:          1, // ASC
	Role:           "operators",
}

// commonEcho is the reference echo of commonParams (int64 as strings).
func commonEcho(p eventsearcher.CommonSearchParams) map[string]any {
	return map[string]any{
		"start_timestamp": fmt.Sprint(p.StartTimestamp), "end_timestamp": fmt.Sprint(p.EndTimestamp),
		"username": p.Username, "ip": p.IP, "instance_ids": p.InstanceIDs, "limit": p.Limit,
		"from_id": p.FromID, "order": p.Order, "role": p.Role,
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func runSearcher(raw any, r *recorder) error {
	s, ok := raw.(eventsearcher.Searcher)
	if !ok {
		return fmt.Errorf("dispensed %T does not implement eventsearcher.Searcher", raw)
	}
	echoes := func(kind string, filter map[string]any) expect {
		return expect{check: func(resp any) string {
			return jsonEqual([]byte(resp.(searchResp).Data), map[string]any{"kind": kind, "filter": filter})
		}}
	}

	fs := eventsearcher.FsEventSearch{
		CommonSearchParams: commonParams,
		Actions:            []string{"upload", "download", "rename"},
		SSHCmd:             "scp",
		Protocols:          []string{"SFTP", "SCP", "FTP"},
		Statuses:           []int32{1, 2, 3},
		FsProvider:         5,
		Bucket:             "tether-bucket",
		Endpoint:           "https://s3.example.test:9000",
	}
	fsEcho := with(commonEcho(fs.CommonSearchParams), "actions", fs.Actions, "ssh_cmd", fs.SSHCmd,
		"protocols", fs.Protocols, "statuses", fs.Statuses, "fs_provider", fs.FsProvider, "bucket", fs.Bucket,
		"endpoint", fs.Endpoint)
	r.do("SearchFsEvents", "SearchFsEvents", fsEcho, echoes("fs", fsEcho), func() (any, error) {
		q := fs
		b, err := s.SearchFsEvents(&q)
		return searchResp{string(b)}, err
	})

	pv := eventsearcher.ProviderEventSearch{
		CommonSearchParams: commonParams,
		Actions:            []string{"add", "update", "delete"},
		ObjectName:         "alice",
		ObjectTypes:        []string{"user", "folder", "admin"},
		OmitObjectData:     true,
	}
	pv.Order = 0 // DESC
	pvEcho := with(commonEcho(pv.CommonSearchParams), "actions", pv.Actions, "object_name", pv.ObjectName,
		"object_types", pv.ObjectTypes, "omit_object_data", pv.OmitObjectData)
	r.do("SearchProviderEvents", "SearchProviderEvents", pvEcho, echoes("provider", pvEcho), func() (any, error) {
		q := pv
		b, err := s.SearchProviderEvents(&q)
		return searchResp{string(b)}, err
	})

	lg := eventsearcher.LogEventSearch{
		CommonSearchParams: commonParams,
		Events:             []int32{1, 2, 5},
		Protocols:          []string{"SSH", "FTP", "DAV", "HTTP"},
	}
	lgEcho := with(commonEcho(lg.CommonSearchParams), "events", lg.Events, "protocols", lg.Protocols)
	r.do("SearchLogEvents", "SearchLogEvents", lgEcho, echoes("log", lgEcho), func() (any, error) {
		q := lg
		b, err := s.SearchLogEvents(&q)
		return searchResp{string(b)}, err
	})

	bad := eventsearcher.FsEventSearch{CommonSearchParams: eventsearcher.CommonSearchParams{Username: "fail"}}
	r.do("SearchFsEvents", "SearchFsEvents", with(commonEcho(bad.CommonSearchParams)),
		expect{wantErr: "search failed"}, func() (any, error) {
			q := bad
			b, err := s.SearchFsEvents(&q)
			return searchResp{string(b)}, err
		})
	return nil
}
