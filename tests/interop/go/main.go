// Command greet-go-client is a grpc-go GreetService client equivalent to the original Go demo's
// client, used to prove that greet's Python server is wire-compatible with grpc-go.
//
// Like the original it dials localhost:8080 and calls all four call kinds with the names Akhil,
// Alice and Bob. Unlike the original it prints one JSON object per line so tests can parse it:
//
//	{"call":"unary","message":"Hello"}                       one reply (client-stream: one per message)
//	{"call":"unary","code":12,"status":"Unimplemented","error":"..."}  a call that ended in a status
//	{"call":"unary","headers":{...},"trailers":{...}}       response metadata (-show-metadata)
//	{"call":"unary","details":[{"type":"google.rpc.BadRequest",...}]}  status details (-show-details)
//
// Flags: -addr host:port, -mode (see modes below), -timeout (deadline of each call); any further
// arguments replace the default names. The exit status is 1 when any call ended in a non-OK status.
//
//	-metadata key=value  outgoing metadata sent on every call (repeatable), e.g.
//	                     -metadata "authorization=Bearer s3cret". For keys ending in -bin the value
//	                     is hex (-metadata trace-bin=00ff); grpc-go sends those bytes base64-encoded.
//	-show-metadata       after each call print the response headers and trailers grpc-go read
//	                     (grpc.Header / grpc.Trailer), as the metadata line above shows.
//	-show-details        after each status line print the rich error details grpc-go decoded
//	                     from grpc-status-details-bin (status.FromError(err).Details()), as the
//	                     details line above shows: BadRequest and ErrorInfo field by field,
//	                     any other type by name, and a detail grpc-go could not decode as its error.
//	-cancel-after N      -mode cancel: replies to read before cancelling each call (default 1).
//	-repeat-for D        run the mode's calls again and again on the same connection for D
//	                     (e.g. 3s), -repeat-every apart (default 50ms): for connection-lifetime
//	                     tests (GOAWAY on max age, server keepalive pings).
//	-compress gzip       send compressed requests (grpc.UseCompressor(gzip.Name)); grpc-go
//	                     decompresses gzip replies either way.
//	-keepalive D         client keepalive (grpc-go ClientParameters: Time and Timeout D,
//	                     PermitWithoutStream); 0, the default, is off.
//
// -mode cancel makes a server-stream and then a bidi call with the names, reads -cancel-after
// replies of each and cancels the call's context; grpc-go then reports Canceled (code 1).
//
// The Go code for the messages and stubs is generated from proto/greet.proto at build time by
// tests/interop/build_go.sh; it is imported here as greet/proto.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	pb "greet/proto"

	"github.com/golang/protobuf/proto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Method paths for the probes that call what the server does not serve.
const (
	unknownMethod  = "/greet_service.GreetService/NoSuchMethod"
	unknownService = "/greet_service.NoSuchService/SayHello"
)

var modes = []string{
	"all", "unary", "server-stream", "client-stream", "bidi",
	"unknown-method", "unknown-service", "deadline", "cancel",
}

// metadataFlag collects repeated -metadata key=value flags into outgoing metadata.
type metadataFlag struct {
	md metadata.MD
}

func (f *metadataFlag) String() string {
	return fmt.Sprint(f.md)
}

func (f *metadataFlag) Set(pair string) error {
	i := strings.IndexByte(pair, '=')
	if i < 0 {
		return fmt.Errorf("want key=value, got %q", pair)
	}
	key, value := strings.ToLower(pair[:i]), pair[i+1:]
	if strings.HasSuffix(key, "-bin") {
		raw, err := hex.DecodeString(value)
		if err != nil {
			return fmt.Errorf("value of binary key %q must be hex: %v", key, err)
		}
		value = string(raw)
	}
	if f.md == nil {
		f.md = metadata.MD{}
	}
	f.md.Append(key, value)
	return nil
}

// reporter prints replies and statuses as JSON lines and remembers whether any call failed.
type reporter struct {
	out         *json.Encoder
	showDetails bool
	failed      bool
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

// detailsLine holds the status details of one failed call, as grpc-go decoded them.
type detailsLine struct {
	Call    string   `json:"call"`
	Details []detail `json:"details"`
}

// detail is one status detail: its message type, and the fields of the two kinds greet sends.
type detail struct {
	Type            string            `json:"type"`
	FieldViolations []fieldViolation  `json:"field_violations,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Domain          string            `json:"domain,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	Error           string            `json:"error,omitempty"`
}

type fieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

type metadataLine struct {
	Call     string      `json:"call"`
	Headers  metadata.MD `json:"headers"`
	Trailers metadata.MD `json:"trailers"`
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
	if r.showDetails {
		r.details(call, err)
	}
}

// details reports the status details of err the way a grpc-go user reads them: through
// status.FromError(err).Details(), typed by a switch on the errdetails message types.
func (r *reporter) details(call string, err error) {
	st, _ := status.FromError(err)
	line := detailsLine{Call: call, Details: []detail{}}
	for _, d := range st.Details() {
		switch m := d.(type) {
		case *errdetails.BadRequest:
			violations := []fieldViolation{}
			for _, v := range m.GetFieldViolations() {
				violations = append(violations, fieldViolation{
					Field: v.GetField(), Description: v.GetDescription(),
				})
			}
			line.Details = append(line.Details, detail{
				Type: "google.rpc.BadRequest", FieldViolations: violations,
			})
		case *errdetails.ErrorInfo:
			line.Details = append(line.Details, detail{
				Type: "google.rpc.ErrorInfo", Reason: m.GetReason(), Domain: m.GetDomain(),
				Metadata: m.GetMetadata(),
			})
		case proto.Message:
			line.Details = append(line.Details, detail{Type: proto.MessageName(m)})
		case error:
			line.Details = append(line.Details, detail{Type: "error", Error: m.Error()})
		}
	}
	_ = r.out.Encode(line)
}

// metadata reports the response headers and trailers grpc-go read for call (none: {}).
func (r *reporter) metadata(call string, headers, trailers metadata.MD) {
	if headers == nil {
		headers = metadata.MD{}
	}
	if trailers == nil {
		trailers = metadata.MD{}
	}
	_ = r.out.Encode(metadataLine{Call: call, Headers: headers, Trailers: trailers})
}

type caller struct {
	conn         *grpc.ClientConn
	client       pb.GreetServiceClient
	timeout      time.Duration
	outgoing     metadata.MD
	showMetadata bool
	cancelAfter  int
	report       *reporter
}

// context is the context of one call: its deadline and the outgoing metadata.
func (c *caller) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	if len(c.outgoing) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, c.outgoing)
	}
	return ctx, cancel
}

// observed returns the call options that capture call's response headers and trailers, and a
// function to run once the call is over that prints them (with -show-metadata; else it does
// nothing).
func (c *caller) observed(call string) ([]grpc.CallOption, func()) {
	if !c.showMetadata {
		return nil, func() {}
	}
	var headers, trailers metadata.MD
	options := []grpc.CallOption{grpc.Header(&headers), grpc.Trailer(&trailers)}
	return options, func() { c.report.metadata(call, headers, trailers) }
}

func (c *caller) unary() {
	ctx, cancel := c.context()
	defer cancel()
	options, done := c.observed("unary")
	defer done()
	res, err := c.client.SayHello(ctx, &pb.NoParam{}, options...)
	if err != nil {
		c.report.fail("unary", err)
		return
	}
	c.report.reply("unary", res.GetMessage())
}

func (c *caller) serverStream(names []string) {
	ctx, cancel := c.context()
	defer cancel()
	options, done := c.observed("server-stream")
	defer done()
	stream, err := c.client.SayHelloServerStreaming(ctx, &pb.NamesList{Names: names}, options...)
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
	options, done := c.observed("client-stream")
	defer done()
	stream, err := c.client.SayHelloClientStreaming(ctx, options...)
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
	options, done := c.observed("bidi")
	defer done()
	stream, err := c.client.SayHelloBidirectionalStreaming(ctx, options...)
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

// cancelled makes a server-stream and a bidi call, reads -cancel-after replies of each, then
// cancels the call's context and reports how the call ends (grpc-go: Canceled). Names are sent
// in the background, so a bidi call is cancelled while it may still be sending.
func (c *caller) cancelled(names []string) {
	ctx, cancel := c.context()
	defer cancel()
	options, done := c.observed("server-stream")
	stream, err := c.client.SayHelloServerStreaming(ctx, &pb.NamesList{Names: names}, options...)
	if err == nil {
		c.readThenCancel("server-stream", stream, cancel)
	} else {
		c.report.fail("server-stream", err)
	}
	done()

	ctx, cancel = c.context()
	defer cancel()
	options, done = c.observed("bidi")
	defer done()
	bidi, err := c.client.SayHelloBidirectionalStreaming(ctx, options...)
	if err != nil {
		c.report.fail("bidi", err)
		return
	}
	go func() {
		for _, name := range names {
			if bidi.Send(&pb.HelloRequest{Name: name}) != nil {
				return
			}
		}
		_ = bidi.CloseSend()
	}()
	c.readThenCancel("bidi", bidi, cancel)
}

// replyStream is what server-stream and bidi calls have in common: the replies.
type replyStream interface {
	Recv() (*pb.HelloResponse, error)
}

// readThenCancel reads replies from stream, calls cancel after -cancel-after of them and reports
// the status the stream then ends in.
func (c *caller) readThenCancel(call string, stream replyStream, cancel func()) {
	received := 0
	for {
		if received == c.cancelAfter {
			cancel()
		}
		res, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			c.report.fail(call, err)
			return
		}
		received++
		c.report.reply(call, res.GetMessage())
	}
}

// invoke calls a method path the generated stub does not know, with an empty request.
func (c *caller) invoke(call, method string) {
	ctx, cancel := c.context()
	defer cancel()
	options, done := c.observed(call)
	defer done()
	res := &pb.HelloResponse{}
	if err := c.conn.Invoke(ctx, method, &pb.NoParam{}, res, options...); err != nil {
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
	case "cancel":
		c.cancelled(names)
	}
}

func main() {
	addr := flag.String("addr", "localhost:8080", "server address host:port")
	mode := flag.String("mode", "all", "what to call: "+strings.Join(modes, ", "))
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each call")
	var outgoing metadataFlag
	flag.Var(&outgoing, "metadata", "key=value sent on every call, repeatable (-bin keys: hex)")
	showMetadata := flag.Bool("show-metadata", false, "print the response headers and trailers")
	cancelAfter := flag.Int("cancel-after", 1, "-mode cancel: replies to read before cancelling")
	showDetails := flag.Bool("show-details", false, "print the status details of failed calls")
	repeatFor := flag.Duration("repeat-for", 0, "repeat the calls on one connection for this long")
	repeatEvery := flag.Duration("repeat-every", 50*time.Millisecond, "pause between -repeat-for rounds")
	keepaliveTime := flag.Duration("keepalive", 0, "client keepalive time and timeout (0: off)")
	compressor := flag.String("compress", "", "compress requests with this compressor (gzip)")
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

	options := []grpc.DialOption{grpc.WithInsecure()}
	if *compressor != "" {
		options = append(options, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	}
	if *keepaliveTime > 0 {
		options = append(options, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: *keepaliveTime, Timeout: *keepaliveTime, PermitWithoutStream: true,
		}))
	}
	conn, err := grpc.Dial(*addr, options...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "did not connect: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()

	report := &reporter{out: json.NewEncoder(os.Stdout), showDetails: *showDetails}
	report.out.SetEscapeHTML(false)
	c := &caller{
		conn: conn, client: pb.NewGreetServiceClient(conn), timeout: *timeout,
		outgoing: outgoing.md, showMetadata: *showMetadata, cancelAfter: *cancelAfter, report: report,
	}
	c.run(*mode, names)
	for end := time.Now().Add(*repeatFor); time.Now().Before(end); {
		time.Sleep(*repeatEvery)
		c.run(*mode, names)
	}
	if report.failed {
		conn.Close()
		os.Exit(1)
	}
}
