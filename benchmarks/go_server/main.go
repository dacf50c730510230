// Command greet-go-server is a grpc-go GreetService server with the same behaviour as greet's
// Python server ("Hello" / "Hello <name>", four call kinds), as a reference to benchmark against.
//
// Flags: -addr host:port (default 127.0.0.1:8080; port 0 picks a free port), -work-delay (time
// each greeting takes, like greet.server's --work-delay), -compression gzip (compress every reply
// message with gzip: grpc-go's server-wide compressor, which grpc-go 1.33 applies to every reply
// whatever the client accepts and whatever its size). When listening it prints
// "grpc-go greet server listening on HOST:PORT" on stderr; SIGINT/SIGTERM stop it gracefully
// (in-flight calls finish) and it exits 0.
//
// The Go code for the messages and stubs is generated from proto/greet.proto at build time by
// tests/interop/build_go.sh; it is imported here as greet/proto.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	pb "greet/proto"

	"google.golang.org/grpc"
)

const hello = "Hello"

type greetServer struct {
	pb.UnimplementedGreetServiceServer
	workDelay time.Duration
}

// greet is the one greeting rule, after the simulated backend work (if any).
func (s *greetServer) greet(ctx context.Context, name string) (string, error) {
	if s.workDelay > 0 {
		select {
		case <-time.After(s.workDelay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return hello + " " + name, nil
}

func (s *greetServer) SayHello(ctx context.Context, _ *pb.NoParam) (*pb.HelloResponse, error) {
	return &pb.HelloResponse{Message: hello}, nil
}

func (s *greetServer) SayHelloServerStreaming(
	req *pb.NamesList, stream pb.GreetService_SayHelloServerStreamingServer,
) error {
	for _, name := range req.GetNames() {
		message, err := s.greet(stream.Context(), name)
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.HelloResponse{Message: message}); err != nil {
			return err
		}
	}
	return nil
}

func (s *greetServer) SayHelloClientStreaming(
	stream pb.GreetService_SayHelloClientStreamingServer,
) error {
	var messages []string
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&pb.MessagesList{Messages: messages})
		}
		if err != nil {
			return err
		}
		message, err := s.greet(stream.Context(), req.GetName())
		if err != nil {
			return err
		}
		messages = append(messages, message)
	}
}

func (s *greetServer) SayHelloBidirectionalStreaming(
	stream pb.GreetService_SayHelloBidirectionalStreamingServer,
) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		message, err := s.greet(stream.Context(), req.GetName())
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.HelloResponse{Message: message}); err != nil {
			return err
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on, host:port")
	workDelay := flag.Duration("work-delay", 0, "time each greeting takes (simulated backend work)")
	compression := flag.String("compression", "none", "compress replies: none or gzip")
	flag.Parse()
	var options []grpc.ServerOption
	switch *compression {
	case "none":
	case "gzip":
		options = append(options, grpc.RPCCompressor(grpc.NewGZIPCompressor()))
	default:
		fmt.Fprintf(os.Stderr, "-compression is none or gzip, not %q\n", *compression)
		os.Exit(2)
	}

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot listen on %s: %v\n", *addr, err)
		os.Exit(1)
	}
	server := grpc.NewServer(options...)
	pb.RegisterGreetServiceServer(server, &greetServer{workDelay: *workDelay})

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		server.GracefulStop()
	}()

	fmt.Fprintf(os.Stderr, "grpc-go greet server listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(1)
	}
}
