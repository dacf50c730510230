#!/bin/sh
# Build the grpc-go interop client and the grpc-go reference server, offline.
#
#   tests/interop/build_go.sh OUTDIR
#
# makes OUTDIR/greet-go-client (from tests/interop/go/) and OUTDIR/greet-go-server (from
# benchmarks/go_server/). Nothing generated is committed: the Go message and stub code is generated
# here from proto/greet.proto by protoc with protoc-gen-go and protoc-gen-go-grpc, and those two
# plugins are themselves built from source.
#
# There is no Go module proxy, so this builds in GOPATH mode (GO111MODULE=off) against the Go
# library sources Debian installs under /usr/share/gocode/src. Debian packages needed:
#   golang-go golang-google-grpc-dev golang-google-protobuf-dev
#   golang-github-golang-protobuf-1-5-dev protobuf-compiler
# (golang-google-grpc-dev pulls in golang-golang-x-net-dev, golang-google-genproto-dev, ...;
# it also carries the source of protoc-gen-go-grpc, golang-google-protobuf-dev that of protoc-gen-go).
#
# Environment: GREET_GOCODE overrides the library root (default /usr/share/gocode); GOCACHE is
# honoured (by default Go's own per-user cache, or OUTDIR/go-cache when there is no home directory).
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
for tool in go protoc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: '$tool' not found; install the Debian packages golang-go" \
            "golang-google-grpc-dev golang-google-protobuf-dev protobuf-compiler" >&2
        exit 1
    fi
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
gocode=${GREET_GOCODE:-/usr/share/gocode}
if [ ! -d "$gocode/src/google.golang.org/grpc" ]; then
    echo "$0: no grpc-go sources under $gocode/src; install golang-google-grpc-dev" >&2
    exit 1
fi
# grpc-go marshals through github.com/golang/protobuf; only 1.4+ (Debian's -1-5-dev) understands
# messages made by today's protoc-gen-go. With 1.3 (-1-3-dev, which apt may pick for grpc) every
# call panics with "protobuf tag not enough fields".
if ! grep -q google.golang.org/protobuf "$gocode/src/github.com/golang/protobuf/go.mod" 2>/dev/null
then
    echo "$0: $gocode/src/github.com/golang/protobuf is missing or older than 1.4;" \
        "install golang-github-golang-protobuf-1-5-dev" >&2
    exit 1
fi

# A private GOPATH entry for our packages (greet/proto, greet/client, greet/server); the libraries
# come from the second entry. Every module setting that could reach the network is switched off.
work=$out/gopath
rm -rf "$work"
mkdir -p "$work/src/greet/proto" "$work/src/greet/client" "$work/src/greet/server" "$work/bin"
export GOPATH="$work:$gocode" GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
if [ -z "${GOCACHE:-}" ] && [ -z "$(go env GOCACHE 2>/dev/null)" ]; then
    export GOCACHE="$out/go-cache"
fi

go build -o "$work/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$work/bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc

# greet.proto says go_package "./proto"; map it to the import path greet/proto instead.
protoc \
    --plugin=protoc-gen-go="$work/bin/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$work/bin/protoc-gen-go-grpc" \
    --proto_path="$repo/proto" \
    --go_out="$work/src" --go_opt=Mgreet.proto=greet/proto \
    --go-grpc_out="$work/src" --go-grpc_opt=Mgreet.proto=greet/proto \
    "$repo/proto/greet.proto"

cp "$repo"/tests/interop/go/*.go "$work/src/greet/client/"
cp "$repo"/benchmarks/go_server/*.go "$work/src/greet/server/"
go build -o "$out/greet-go-client" greet/client
go build -o "$out/greet-go-server" greet/server
