// Calls GreetService with connect-node's transports (Connect and gRPC-Web, over HTTP/1.1 and
// HTTP/2) and prints what came back as JSON; tests/test_connect_node.py runs it and checks it.
//
//   node test/connect_node.mjs '{"baseUrl": URL, "transports": [{"name": ..., "protocol":
//       "connect" | "grpc-web", "httpVersion": "1.1" | "2", "binary": bool}, ...],
//       "names": [...], "longName": "..."}'

import { ConnectError, Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { GreetService } from "../gen/greet_pb.js";

const config = JSON.parse(process.argv[2]);

function transportFor({ protocol, httpVersion, binary }) {
  const options = { baseUrl: config.baseUrl, httpVersion, useBinaryFormat: binary };
  return protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
}

async function outcome(call) {
  try {
    return { value: await call() };
  } catch (error) {
    const err = ConnectError.from(error);
    return {
      error: {
        code: Code[err.code],
        message: err.rawMessage,
        badRequest: err.findDetails(BadRequestSchema).flatMap((d) =>
          d.fieldViolations.map((v) => ({
            field: v.field,
            reason: v.reason,
            description: v.description,
          })),
        ),
        errorInfo: err
          .findDetails(ErrorInfoSchema)
          .map((d) => ({ reason: d.reason, domain: d.domain, metadata: d.metadata })),
      },
    };
  }
}

async function collect(stream, into) {
  for await (const reply of stream) into.push(reply.message);
  return into;
}

const results = {};
for (const spec of config.transports) {
  const client = createClient(GreetService, transportFor(spec));
  const timeoutMs = 20000;
  const unary = await outcome(async () => (await client.sayHello({}, { timeoutMs })).message);
  const stream = await outcome(() =>
    collect(client.sayHelloServerStreaming({ names: config.names }, { timeoutMs }), []),
  );
  const received = [];
  const error = await outcome(() =>
    collect(
      client.sayHelloServerStreaming({ names: [config.names[0], config.longName] }, { timeoutMs }),
      received,
    ),
  );
  results[spec.name] = { unary, stream, error: { ...error, received } };
}
console.log(JSON.stringify(results));
