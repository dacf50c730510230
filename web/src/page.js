// The live page: calls GreetService from the browser over Connect (connect-web) or gRPC-Web
// (grpc-web's own client) and shows each streamed greeting as it arrives.
//
// Elements the browser test reads: #state ("calling", "streaming", "done" or "failed"),
// #reply (the unary reply), #greetings li (one per streamed message, in order) and #error
// (the status code, message and each google.rpc.BadRequest field violation).

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import * as grpcWeb from "grpc-web";

import {
  GreetService,
  HelloResponseSchema,
  NamesListSchema,
  NoParamSchema,
} from "../gen/greet_pb.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";

const SERVICE = GreetService.typeName;

function apiBase() {
  const fromQuery = new URLSearchParams(window.location.search).get("api");
  const fromMeta = document.querySelector('meta[name="greet-api"]')?.content;
  return (fromQuery || fromMeta || "").replace(/\/+$/, "");
}

// A failed call, whichever client made it: the gRPC code name, the message and the
// field violations of the google.rpc.BadRequest detail, if the server sent one.
class CallFailure extends Error {
  constructor(codeName, message, violations) {
    super(message);
    this.codeName = codeName;
    this.violations = violations;
  }
}

function snakeCase(name) {
  return name.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c).toUpperCase();
}

// --- Connect: connect-web's client on the code protoc-gen-es generated ---------------------

function connectClient(baseUrl) {
  // JSON on the wire (useBinaryFormat: false), so the browser's network panel shows it
  const transport = createConnectTransport({ baseUrl, useBinaryFormat: false });
  const client = createClient(GreetService, transport);
  const failure = (error) => {
    const err = ConnectError.from(error);
    const violations = err
      .findDetails(BadRequestSchema)
      .flatMap((detail) => detail.fieldViolations);
    return new CallFailure(snakeCase(Code[err.code]), err.rawMessage, violations);
  };
  return {
    async sayHello() {
      try {
        return (await client.sayHello({})).message;
      } catch (error) {
        throw failure(error);
      }
    },
    async *greetNames(names) {
      try {
        for await (const reply of client.sayHelloServerStreaming({ names })) {
          yield reply.message;
        }
      } catch (error) {
        throw failure(error);
      }
    },
  };
}

// --- gRPC-Web: grpc-web's client, with protobuf-es messages as its (de)serializers ----------

function grpcWebClient(baseUrl, format) {
  const client = new grpcWeb.GrpcWebClientBase({ format });
  const method = (name, type, requestSchema) =>
    new grpcWeb.MethodDescriptor(
      `/${SERVICE}/${name}`,
      type,
      Object,
      Object,
      (request) => toBinary(requestSchema, request),
      (bytes) => fromBinary(HelloResponseSchema, bytes),
    );
  const sayHello = method("SayHello", grpcWeb.MethodType.UNARY, NoParamSchema);
  const stream = method(
    "SayHelloServerStreaming",
    grpcWeb.MethodType.SERVER_STREAMING,
    NamesListSchema,
  );
  const failure = (error) => {
    const violations = [];
    const details = error.metadata?.["grpc-status-details-bin"];
    if (details) {
      const bytes = Uint8Array.from(atob(pad(details)), (c) => c.charCodeAt(0));
      for (const any of fromBinary(StatusSchema, bytes).details) {
        const badRequest = anyUnpack(any, BadRequestSchema);
        if (badRequest) violations.push(...badRequest.fieldViolations);
      }
    }
    const codeName = snakeCase(Code[error.code] ?? "Unknown");
    return new CallFailure(codeName, error.message, violations);
  };
  return {
    async sayHello() {
      try {
        const reply = await client.unaryCall(
          `${baseUrl}/${SERVICE}/SayHello`,
          create(NoParamSchema),
          {},
          sayHello,
        );
        return reply.message;
      } catch (error) {
        throw failure(error);
      }
    },
    async *greetNames(names) {
      // grpc-web's stream is event based: queue its events and yield them in order
      const queue = [];
      let wake = null;
      const push = (event) => {
        queue.push(event);
        if (wake) wake();
      };
      const call = client.serverStreaming(
        `${baseUrl}/${SERVICE}/SayHelloServerStreaming`,
        create(NamesListSchema, { names }),
        {},
        stream,
      );
      call.on("data", (reply) => push({ reply }));
      call.on("error", (error) => push({ error }));
      call.on("end", () => push({ end: true }));
      try {
        for (;;) {
          while (queue.length === 0) await new Promise((resolve) => (wake = resolve));
          const event = queue.shift();
          if (event.error) throw failure(event.error);
          if (event.end) return;
          yield event.reply.message;
        }
      } finally {
        call.cancel();
      }
    },
  };
}

function pad(base64) {
  return base64 + "=".repeat((4 - (base64.length % 4)) % 4);
}

// --- The page ----------------------------------------------------------------------------

const base = apiBase();
const clients = {
  connect: connectClient(base),
  "grpc-web": grpcWebClient(base, "binary"),
  "grpc-web-text": grpcWebClient(base, "text"),
};

const $ = (selector) => document.querySelector(selector);

function chosenClient() {
  return clients[document.querySelector('input[name="transport"]:checked').value];
}

function reset(state) {
  $("#state").textContent = state;
  $("#reply").textContent = "";
  $("#greetings").replaceChildren();
  $("#error").replaceChildren();
}

function showFailure(error) {
  $("#state").textContent = "failed";
  const box = $("#error");
  const head = document.createElement("p");
  head.className = "status";
  if (error instanceof CallFailure) {
    head.textContent = `${error.codeName}: ${error.message}`;
    box.append(head);
    const list = document.createElement("ul");
    for (const v of error.violations) {
      const item = document.createElement("li");
      item.className = "violation";
      item.dataset.field = v.field;
      item.dataset.reason = v.reason;
      item.textContent = `${v.field} (${v.reason}): ${v.description}`;
      list.append(item);
    }
    box.append(list);
  } else {
    head.textContent = `error: ${error}`;
    box.append(head);
  }
}

$("#api").textContent = base;

$("#say-hello").addEventListener("click", async () => {
  reset("calling");
  try {
    $("#reply").textContent = await chosenClient().sayHello();
    $("#state").textContent = "done";
  } catch (error) {
    showFailure(error);
  }
});

$("#greet-names").addEventListener("click", async () => {
  reset("streaming");
  const names = $("#names")
    .value.split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  try {
    for await (const greeting of chosenClient().greetNames(names)) {
      const item = document.createElement("li");
      item.textContent = greeting;
      $("#greetings").append(item);
    }
    $("#state").textContent = "done";
  } catch (error) {
    showFailure(error);
  }
});
