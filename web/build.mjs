// Builds the live page into dist/: protoc-gen-es writes the message and service code for
// proto/greet.proto and google.rpc's status and error details into gen/, and esbuild bundles
// src/page.js with its npm dependencies into dist/page.js. Nothing it writes is committed.
//
// protoc is grpcio-tools' and google/rpc/*.proto come from googleapis-common-protos (a
// dependency of greet), both from the Python in $PYTHON (python3 by default): the one greet and
// its `web` dependency group are installed in.

import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const gen = join(here, "gen");
const dist = join(here, "dist");

const python = process.env.PYTHON || "python3";

// The include directory holding google/rpc/status.proto (googleapis-common-protos)
function googleapisProtos() {
  const code =
    "import os, google.rpc.status_pb2 as m; " +
    "print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))";
  try {
    return execFileSync(python, ["-c", code], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(
      `${python} cannot import google.rpc.status_pb2: set PYTHON to the Python that greet ` +
        "and its `web` dependency group (pip install --group web) are installed in",
    );
  }
}

rmSync(gen, { recursive: true, force: true });
rmSync(dist, { recursive: true, force: true });
mkdirSync(gen, { recursive: true });
mkdirSync(dist, { recursive: true });

// grpcio-tools' protoc brings the well-known types (google/protobuf/any.proto) with it
execFileSync(
  python,
  [
    "-m",
    "grpc_tools.protoc",
    `--plugin=protoc-gen-es=${join(here, "node_modules", ".bin", "protoc-gen-es")}`,
    `--es_out=${gen}`,
    "--es_opt=target=js",
    `-I${join(here, "..", "proto")}`,
    `-I${googleapisProtos()}`,
    "greet.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
  ],
  { stdio: "inherit" },
);

await esbuild.build({
  entryPoints: [join(here, "src", "page.js")],
  bundle: true,
  format: "iife",
  target: "es2020",
  minify: true,
  sourcemap: true,
  outfile: join(dist, "page.js"),
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(dist, "index.html"));
console.log(`built ${dist}`);
