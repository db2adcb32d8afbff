// Command yamuxecho checks Tether's yamux framing against hashicorp/yamux:
// it listens on the unix socket given as its argument, prints "ready",
// accepts one connection as a yamux server, pings the client, opens one
// stream of its own carrying "hello from go, ping ok" (or the ping error),
// and echoes every stream the client opens until the client closes it.
package main

import (
	"fmt"
	"io"
	"net"
	"os"

	"github.com/hashicorp/yamux"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: yamuxecho <socket>")
		os.Exit(2)
	}
	ln, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer ln.Close()
	fmt.Println("ready")
	conn, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	session, err := yamux.Server(conn, yamux.DefaultConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		greeting := "hello from go, ping ok"
		if _, err := session.Ping(); err != nil {
			greeting = "ping failed: " + err.Error()
		}
		s, err := session.OpenStream()
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return
		}
		_, _ = s.Write([]byte(greeting))
		_ = s.Close()
	}()
	for {
		s, err := session.AcceptStream()
		if err != nil {
			return // the client went away
		}
		go func() {
			_, _ = io.Copy(s, s)
			_ = s.Close()
		}()
	}
}
