// Command greet-go-client is a grpc-go GreetService client equivalent to the original Go demo's
// client, used to prove that greet's Python server is wire-compatible with grpc-go.
//
// Like the original it dials localhost:8080 and calls all four call kinds with the names Akhil,
// Alice and Bob. Unlike the original it prints one JSON object per line so tests can parse it:
//
//	{"call":"unary","message":"Hello"}                       one reply (client-stream: one per message)
//	{"call":"unary","code":12,"status":"Unimplemented","error":"..."}  a call that ended in a status
//
// Flags: -addr host:port, -mode (see modes below), -timeout (deadline of each call); any further
// arguments replace the default names. The exit status is 1 when any call ended in a non-OK status.
//
// The Go code for the messages and stubs is generated from proto/greet.proto at build time by
// tests/interop/build_go.sh; it is imported here as greet/proto.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	pb "greet/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Method paths for the probes that call what the server does not serve.
const (
	unknownMethod  = "/greet_service.GreetService/NoSuchMethod"
	unknownService = "/greet_service.NoSuchService/SayHello"
)

var modes = []string{
	"all", "unary", "server-stream", "client-stream", "bidi",
	"unknown-method", "unknown-service", "deadline",
}

// reporter prints replies and statuses as JSON lines and remembers whether any call failed.
type reporter struct {
	out    *json.Encoder
	failed bool
}

type replyLine struct {
	Call    string `json:"call"`
	Message string `json:"message"`
}

type statusLine struct {
	Call   string `json:"call"`
	Code   uint32 `json:"code"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

func (r *reporter) reply(call, message string) {
	_ = r.out.Encode(replyLine{Call: call, Message: message})
}

// fail reports the status grpc-go gives for err, exactly as grpc-go reads it.
func (r *reporter) fail(call string, err error) {
	r.failed = true
	st := status.Convert(err)
	_ = r.out.Encode(statusLine{
		Call: call, Code: uint32(st.Code()), Status: st.Code().String(), Error: st.Message(),
	})
}

type caller struct {
	conn    *grpc.ClientConn
	client  pb.GreetServiceClient
	timeout time.Duration
	report  *reporter
}

func (c *caller) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

func (c *caller) unary() {
	ctx, cancel := c.context()
	defer cancel()
	res, err := c.client.SayHello(ctx, &pb.NoParam{})
	if err != nil {
		c.report.fail("unary", err)
		return
	}
	c.report.reply("unary", res.GetMessage())
}

func (c *caller) serverStream(names []string) {
	ctx, cancel := c.context()
	defer cancel()
	stream, err := c.client.SayHelloServerStreaming(ctx, &pb.NamesList{Names: names})
	if err != nil {
		c.report.fail("server-stream", err)
		return
	}
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			c.report.fail("server-stream", err)
			return
		}
		c.report.reply("server-stream", res.GetMessage())
	}
}

func (c *caller) clientStream(names []string) {
	ctx, cancel := c.context()
	defer cancel()
	stream, err := c.client.SayHelloClientStreaming(ctx)
	if err != nil {
		c.report.fail("client-stream", err)
		return
	}
	for _, name := range names {
		// A failed Send means the stream is over; CloseAndRecv reports the real status.
		if stream.Send(&pb.HelloRequest{Name: name}) != nil {
			break
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		c.report.fail("client-stream", err)
		return
	}
	for _, message := range res.GetMessages() {
		c.report.reply("client-stream", message)
	}
}

func (c *caller) bidi(names []string) {
	ctx, cancel := c.context()
	defer cancel()
	stream, err := c.client.SayHelloBidirectionalStreaming(ctx)
	if err != nil {
		c.report.fail("bidi", err)
		return
	}
	// Send in the background, as the original does, while replies are read as they arrive.
	go func() {
		for _, name := range names {
			if stream.Send(&pb.HelloRequest{Name: name}) != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			c.report.fail("bidi", err)
			return
		}
		c.report.reply("bidi", res.GetMessage())
	}
}

// invoke calls a method path the generated stub does not know, with an empty request.
func (c *caller) invoke(call, method string) {
	ctx, cancel := c.context()
	defer cancel()
	res := &pb.HelloResponse{}
	if err := c.conn.Invoke(ctx, method, &pb.NoParam{}, res); err != nil {
		c.report.fail(call, err)
		return
	}
	c.report.reply(call, res.GetMessage())
}

func (c *caller) run(mode string, names []string) {
	switch mode {
	case "all":
		c.unary()
		c.serverStream(names)
		c.clientStream(names)
		c.bidi(names)
	case "unary":
		c.unary()
	case "server-stream":
		c.serverStream(names)
	case "client-stream":
		c.clientStream(names)
	case "bidi":
		c.bidi(names)
	case "unknown-method":
		c.invoke("unknown-method", unknownMethod)
	case "unknown-service":
		c.invoke("unknown-service", unknownService)
	case "deadline":
		// The three calls that greet by name, each under -timeout: against a server whose
		// greetings take longer (greet.server --work-delay), each must end in DeadlineExceeded.
		c.serverStream(names)
		c.clientStream(names)
		c.bidi(names)
	}
}

func main() {
	addr := flag.String("addr", "localhost:8080", "server address host:port")
	mode := flag.String("mode", "all", "what to call: "+strings.Join(modes, ", "))
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each call")
	flag.Parse()

	known := false
	for _, m := range modes {
		known = known || m == *mode
	}
	if !known {
		fmt.Fprintf(os.Stderr, "unknown -mode %q; one of: %s\n", *mode, strings.Join(modes, ", "))
		os.Exit(2)
	}
	names := flag.Args()
	if len(names) == 0 {
		names = []string{"Akhil", "Alice", "Bob"}
	}

	conn, err := grpc.Dial(*addr, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintf(os.Stderr, "did not connect: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()

	report := &reporter{out: json.NewEncoder(os.Stdout)}
	report.out.SetEscapeHTML(false)
	c := &caller{conn: conn, client: pb.NewGreetServiceClient(conn), timeout: *timeout, report: report}
	c.run(*mode, names)
	if report.failed {
		conn.Close()
		os.Exit(1)
	}
}
