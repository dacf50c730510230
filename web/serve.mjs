// Serves the built live page (dist/, from `npm run build`) on its own origin:
//
//   npm run serve -- --port 8081 --api http://127.0.0.1:8080
//
// --api is the greet server the page calls (written into the page's greet-api meta tag);
// --host is the address to listen on (127.0.0.1 by default); --port 0 picks a free port.
// Once listening it prints one line, "greet live page at http://HOST:PORT/ calling API".

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const dist = join(dirname(fileURLToPath(import.meta.url)), "dist");
const { values } = parseArgs({
  options: {
    port: { type: "string", default: "8081" },
    host: { type: "string", default: "127.0.0.1" },
    api: { type: "string", default: "http://127.0.0.1:8080" },
  },
});

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};
const FILES = new Set(["/index.html", "/page.js", "/page.js.map"]);

function escapeAttribute(text) {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

const server = createServer(async (request, response) => {
  const path = new URL(request.url, "http://page").pathname;
  const file = path === "/" ? "/index.html" : path;
  if (request.method !== "GET" || !FILES.has(file)) {
    response.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  let body;
  try {
    body = await readFile(join(dist, file));
  } catch {
    response
      .writeHead(500, { "content-type": "text/plain" })
      .end("the page is not built: run `npm run build` first\n");
    return;
  }
  if (file === "/index.html") {
    body = body
      .toString("utf8")
      .replace(
        /(<meta name="greet-api" content=")[^"]*(")/,
        `$1${escapeAttribute(values.api)}$2`,
      );
  }
  response.writeHead(200, { "content-type": TYPES[extname(file)], "cache-control": "no-store" });
  response.end(body);
});

server.listen(Number(values.port), values.host, () => {
  const { address, port } = server.address();
  const host = address.includes(":") ? `[${address}]` : address;
  console.log(`greet live page at http://${host}:${port}/ calling ${values.api}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
