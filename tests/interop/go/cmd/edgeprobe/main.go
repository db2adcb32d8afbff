// Command edgeprobe is a plain grpc-go client (no go-plugin) for the edge cases of a gRPC server: it calls
// the test service tether.test.Edge (methods built from the KV messages, see tests/core/h2server_test.ts)
// on a unix socket and prints one JSON object: per case, the status code name, the status message and what
// came back. With -cert/-key it presents that client certificate; with -ca it trusts that server CA (mTLS).
//
//	edgeprobe -addr /tmp/edge.sock [-ca server.pem -cert client.pem -key client-key.pem] [-cases ok,deadline,...]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvv1 "tether.dev/interop/gen/tether/kv/v1"
)

type result struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Values  []string `json:"values,omitempty"`
}

func outcome(err error, values ...string) result {
	s := status.Convert(err)
	return result{Code: s.Code().String(), Message: s.Message(), Values: values}
}

func main() {
	addr := flag.String("addr", "", "unix socket of the server")
	caFile := flag.String("ca", "", "server certificate to trust (PEM); plaintext without it")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	cases := flag.String("cases", "ok,deadline,cancel,unknown,unknownService,error,large,serverStream,clientStream,bidi", "cases to run")
	largeBytes := flag.Int("large-bytes", 2048, "value size of the large case")
	flag.Parse()

	creds := insecure.NewCredentials()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fail(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fail(fmt.Errorf("no certificate in %s", *caFile))
		}
		config := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		if *certFile != "" {
			pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
			if err != nil {
				fail(err)
			}
			config.Certificates = []tls.Certificate{pair}
		}
		creds = credentials.NewTLS(config)
	}
	conn, err := grpc.NewClient("unix:"+*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fail(err)
	}
	defer conn.Close()

	report := map[string]result{}
	for _, name := range strings.Split(*cases, ",") {
		report[name] = run(conn, name, *largeBytes)
	}
	out, _ := json.Marshal(report)
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "edgeprobe:", err)
	os.Exit(2)
}

var (
	serverStream = &grpc.StreamDesc{ServerStreams: true}
	clientStream = &grpc.StreamDesc{ClientStreams: true}
	bidi         = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
)

func echo(ctx context.Context, conn *grpc.ClientConn, method string, in *kvv1.Entry) (*kvv1.Entry, error) {
	out := &kvv1.Entry{}
	err := conn.Invoke(ctx, method, in, out)
	return out, err
}

func run(conn *grpc.ClientConn, name string, largeBytes int) result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch name {
	case "ok":
		out, err := echo(ctx, conn, "/tether.test.Edge/Echo", &kvv1.Entry{Key: "hello", Value: []byte("world")})
		return outcome(err, out.GetKey(), string(out.GetValue()))
	case "deadline":
		short, stop := context.WithTimeout(ctx, 300*time.Millisecond)
		defer stop()
		_, err := echo(short, conn, "/tether.test.Edge/Echo", &kvv1.Entry{Key: "wait:deadline"})
		return outcome(err)
	case "cancel":
		cancellable, stop := context.WithCancel(ctx)
		time.AfterFunc(200*time.Millisecond, stop)
		_, err := echo(cancellable, conn, "/tether.test.Edge/Echo", &kvv1.Entry{Key: "wait:cancel"})
		return outcome(err)
	case "unknown":
		_, err := echo(ctx, conn, "/tether.test.Edge/Nope", &kvv1.Entry{})
		return outcome(err)
	case "unknownService":
		_, err := echo(ctx, conn, "/no.such.Service/Call", &kvv1.Entry{})
		return outcome(err)
	case "error":
		_, err := echo(ctx, conn, "/tether.test.Edge/Echo", &kvv1.Entry{Key: "fail", Value: []byte(" 100% sûr,\nline two ")})
		return outcome(err)
	case "large":
		_, err := echo(ctx, conn, "/tether.test.Edge/Echo", &kvv1.Entry{Key: "large", Value: make([]byte, largeBytes)})
		return outcome(err)
	case "serverStream":
		stream, err := conn.NewStream(ctx, serverStream, "/tether.test.Edge/Count")
		if err != nil {
			return outcome(err)
		}
		if err := stream.SendMsg(&kvv1.AddRequest{A: 1, B: 5}); err != nil {
			return outcome(err)
		}
		stream.CloseSend()
		var values []string
		for {
			out := &kvv1.AddResponse{}
			if err := stream.RecvMsg(out); err != nil {
				if err == io.EOF {
					return outcome(nil, values...)
				}
				return outcome(err, values...)
			}
			values = append(values, fmt.Sprint(out.Sum))
		}
	case "clientStream":
		stream, err := conn.NewStream(ctx, clientStream, "/tether.test.Edge/Sum")
		if err != nil {
			return outcome(err)
		}
		for i := int64(1); i <= 3; i++ {
			if err := stream.SendMsg(&kvv1.AddRequest{A: i, B: 10 * i}); err != nil {
				return outcome(err)
			}
		}
		stream.CloseSend()
		out := &kvv1.AddResponse{}
		err = stream.RecvMsg(out)
		return outcome(err, fmt.Sprint(out.Sum))
	case "bidi":
		stream, err := conn.NewStream(ctx, bidi, "/tether.test.Edge/Chat")
		if err != nil {
			return outcome(err)
		}
		for i := 0; i < 20; i++ {
			if err := stream.SendMsg(&kvv1.Entry{Key: fmt.Sprint(i)}); err != nil {
				return outcome(err)
			}
		}
		stream.CloseSend()
		var values []string
		for {
			out := &kvv1.Entry{}
			if err := stream.RecvMsg(out); err != nil {
				if err == io.EOF {
					return outcome(nil, values...)
				}
				return outcome(err, values...)
			}
			values = append(values, out.Key)
		}
	}
	return result{Code: "NoSuchCase", Message: name}
}
