package main

import (
	"errors"

	"github.com/hashicorp/go-hclog"
	"github.com/sftpgo/sdk/plugin/eventsearcher"
)

// echoSearcher implements eventsearcher.Searcher: every search answers with
// {"kind":"fs"|"provider"|"log","filter":{...}}, the filter it received
// keyed by protobuf field names (int64 as decimal strings, order as its
// number). Username "fail" makes a search fail with "search failed".
type echoSearcher struct{ log hclog.Logger }

var errSearch = errors.New("search failed")

func common(p eventsearcher.CommonSearchParams) map[string]any {
	return map[string]any{
		"start_timestamp": i64(p.StartTimestamp),
		"end_timestamp":   i64(p.EndTimestamp),
		"username":        p.Username,
		"ip":              p.IP,
		"instance_ids":    orEmpty(p.InstanceIDs),
		"limit":           p.Limit,
		"from_id":         p.FromID,
		"order":           p.Order,
		"role":            p.Role,
	}
}

func echo(kind string, filter map[string]any) ([]byte, error) {
	return mustJSON(map[string]any{"kind": kind, "filter": filter}), nil
}

func (s *echoSearcher) SearchFsEvents(f *eventsearcher.FsEventSearch) ([]byte, error) {
	s.log.Info("SearchFsEvents", "username", f.Username)
	if f.Username == "fail" {
		return nil, errSearch
	}
	m := common(f.CommonSearchParams)
	m["actions"] = orEmpty(f.Actions)
	m["ssh_cmd"] = f.SSHCmd
	m["protocols"] = orEmpty(f.Protocols)
	m["statuses"] = orEmpty(f.Statuses)
	m["fs_provider"] = f.FsProvider
	m["bucket"] = f.Bucket
	m["endpoint"] = f.Endpoint
	return echo("fs", m)
}

func (s *echoSearcher) SearchProviderEvents(f *eventsearcher.ProviderEventSearch) ([]byte, error) {
	s.log.Info("SearchProviderEvents", "username", f.Username)
	if f.Username == "fail" {
		return nil, errSearch
	}
	m := common(f.CommonSearchParams)
	m["actions"] = orEmpty(f.Actions)
	m["object_name"] = f.ObjectName
	m["object_types"] = orEmpty(f.ObjectTypes)
	m["omit_object_data"] = f.OmitObjectData
	return echo("provider", m)
}

func (s *echoSearcher) SearchLogEvents(f *eventsearcher.LogEventSearch) ([]byte, error) {
	s.log.Info("SearchLogEvents", "username", f.Username)
	if f.Username == "fail" {
		return nil, errSearch
	}
	m := common(f.CommonSearchParams)
	m["events"] = orEmpty(f.Events)
	m["protocols"] = orEmpty(f.Protocols)
	return echo("log", m)
}
