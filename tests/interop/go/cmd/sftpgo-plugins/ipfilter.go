package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// filter implements ipfilter.Filter: 10.0.0.0/8 (also as IPv4-mapped IPv6)
// is banned, everything else is allowed. Two magic addresses make the
// plugin's state visible: 0.0.0.0 is refused with "reloads=<n>" (the number
// of Reload calls so far) and 0.0.0.1 is refused with an echo of its
// arguments.
type filter struct {
	log     hclog.Logger
	reloads atomic.Int64
}

var banned = netip.MustParsePrefix("10.0.0.0/8")

func (f *filter) CheckIP(ip, protocol string) error {
	f.log.Info("CheckIP", "ip", ip, "protocol", protocol)
	switch ip {
	case "0.0.0.0":
		return fmt.Errorf("reloads=%d", f.reloads.Load())
	case "0.0.0.1":
		return fmt.Errorf("echo ip=%s protocol=%s", ip, protocol)
	}
	if addr, err := netip.ParseAddr(ip); err == nil && banned.Contains(addr.Unmap()) {
		return errors.New("ip banned")
	}
	return nil
}

func (f *filter) Reload() error {
	n := f.reloads.Add(1)
	f.log.Info("Reload", "reloads", n)
	return nil
}
