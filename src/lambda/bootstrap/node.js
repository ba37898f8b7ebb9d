// firelake's Lambda runtime for Node.js: the Runtime API loop, built-in modules only.
// firelake runs it as `node -e <this file>` with the sandbox's environment.
"use strict";
const http = require("http");
const path = require("path");
const fs = require("fs");
const url = require("url");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || process.cwd();
const HANDLER = process.env._HANDLER || "";

function request(method, route, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: PORT, method, path: "/2018-06-01/runtime" + route, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function errorDocument(error) {
  if (!(error instanceof Error)) {
    return { errorType: "string", errorMessage: String(error), trace: [] };
  }
  return { errorType: error.name, errorMessage: error.message, trace: String(error.stack || "").split("\n") };
}

class HandlerError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

async function loadHandler() {
  const dot = HANDLER.lastIndexOf(".");
  if (dot <= 0) throw new HandlerError("Runtime.MalformedHandlerName", `Bad handler ${HANDLER}`);
  const modulePath = HANDLER.slice(0, dot);
  const name = HANDLER.slice(dot + 1);
  const base = path.resolve(TASK_ROOT, modulePath);
  const found = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!found) throw new HandlerError("Runtime.ImportModuleError", `Error: Cannot find module '${modulePath}'`);
  let module;
  try {
    module = found.endsWith(".mjs") ? await import(url.pathToFileURL(found).href) : require(found);
  } catch (error) {
    if (error && error.code === "ERR_REQUIRE_ESM") {
      module = await import(url.pathToFileURL(found).href);
    } else {
      throw new HandlerError(error instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError", String(error));
    }
  }
  const handler = module[name] || (module.default && module.default[name]);
  if (typeof handler !== "function") {
    throw new HandlerError("Runtime.HandlerNotFound", `${modulePath}.${name} is undefined or not exported`);
  }
  return handler;
}

function call(handler, event, context) {
  return new Promise((resolve, reject) => {
    let done = false;
    const callback = (error, result) => {
      if (done) return;
      done = true;
      if (error !== undefined && error !== null) reject(error);
      else resolve(result);
    };
    try {
      const out = handler(event, context, callback);
      if (out && typeof out.then === "function") out.then((r) => callback(null, r), (e) => callback(e === undefined || e === null ? new Error(String(e)) : e));
      else if (handler.length < 3) callback(null, out);
    } catch (error) {
      callback(error);
    }
  });
}

async function main() {
  let handler;
  try {
    handler = await loadHandler();
  } catch (error) {
    const doc = errorDocument(error);
    console.error(`${doc.errorType}: ${doc.errorMessage}`);
    await request("POST", "/init/error", JSON.stringify(doc), { "Lambda-Runtime-Function-Error-Type": doc.errorType });
    process.exit(1);
  }
  for (;;) {
    const next = await request("GET", "/invocation/next");
    const headers = next.headers;
    const id = headers["lambda-runtime-aws-request-id"];
    const deadline = Number(headers["lambda-runtime-deadline-ms"] || 0);
    process.env._X_AMZN_TRACE_ID = headers["lambda-runtime-trace-id"] || "";
    const context = {
      awsRequestId: id,
      invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: headers["lambda-runtime-client-context"] ? JSON.parse(headers["lambda-runtime-client-context"]) : undefined,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    };
    try {
      const text = next.body.toString("utf8");
      const event = text.length ? JSON.parse(text) : null;
      const result = await call(handler, event, context);
      const body = result === undefined ? "null" : JSON.stringify(result);
      await request("POST", `/invocation/${id}/response`, body);
    } catch (error) {
      const doc = errorDocument(error);
      console.error(`ERROR\tInvoke Error\t${JSON.stringify(doc)}`);
      await request("POST", `/invocation/${id}/error`, JSON.stringify(doc), { "Lambda-Runtime-Function-Error-Type": doc.errorType });
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
