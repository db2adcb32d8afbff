package main

import (
	"fmt"

	"github.com/sftpgo/sdk/plugin/ipfilter"
)

func runIPFilter(raw any, r *recorder) error {
	f, ok := raw.(ipfilter.Filter)
	if !ok {
		return fmt.Errorf("dispensed %T does not implement ipfilter.Filter", raw)
	}
	check := func(ip, protocol string, ex expect) {
		r.do("CheckIP", "CheckIP", map[string]any{"ip": ip, "protocol": protocol}, ex, func() (any, error) {
			return map[string]any{}, f.CheckIP(ip, protocol)
		})
	}
	reload := func() {
		r.do("Reload", "Reload", map[string]any{}, expect{}, func() (any, error) {
			return map[string]any{}, f.Reload()
		})
	}
	check("198.51.100.7", "SSH", expect{})
	check("10.1.2.3", "FTP", expect{wantErr: "ip banned"})
	check("::ffff:10.9.8.7", "HTTP", expect{wantErr: "ip banned"})
	check("2001:db8::1", "DAV", expect{})
	check("0.0.0.0", "SSH", expect{wantErr: "reloads=0"})
	reload()
	reload()
	check("0.0.0.0", "SSH", expect{wantErr: "reloads=2"})
	check("0.0.0.1", "DAV", expect{wantErr: "echo ip=0.0.0.1 protocol=DAV"})
	return nil
}
