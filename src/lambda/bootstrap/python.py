# firelake's Lambda runtime for Python: the Runtime API loop, standard library only.
# firelake runs it as `python3 -c <this file>` with the sandbox's environment; when the
# awslambdaric package is installed, it runs that instead, as AWS's images do.
import importlib
import json
import os
import sys
import time
import traceback
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
TASK_ROOT = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
HANDLER = os.environ.get("_HANDLER", "")


def post(path, body, headers=None):
    request = urllib.request.Request(API + path, data=body, method="POST", headers=headers or {})
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def error_document(error):
    # The bootstrap's own frames (run as `-c`, file "<string>") are not the handler's.
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != "<string>"]
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_list(frames),
    }


def flush():
    sys.stdout.flush()
    sys.stderr.flush()


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        context = headers.get("Lambda-Runtime-Client-Context")
        self.client_context = json.loads(context) if context else None
        self.identity = None

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def load_handler():
    module_name, _, function_name = HANDLER.rpartition(".")
    if not module_name or not function_name:
        raise HandlerError("Runtime.MalformedHandlerName", f"Bad handler '{HANDLER}': not enough values to unpack (expected 2, got 1)")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}") from error
    except SyntaxError as error:
        raise HandlerError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}") from error
    handler = getattr(module, function_name, None)
    if handler is None:
        raise HandlerError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


class HandlerError(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def main():
    sys.path.insert(0, TASK_ROOT)
    try:
        handler = load_handler()
    except HandlerError as error:
        print(f"[ERROR] {error.error_type}: {error}", file=sys.stderr)
        flush()
        body = json.dumps({"errorMessage": str(error), "errorType": error.error_type, "stackTrace": []}).encode()
        post("/init/error", body, {"Lambda-Runtime-Function-Error-Type": error.error_type})
        sys.exit(1)
    except Exception as error:
        traceback.print_exc()
        flush()
        post("/init/error", json.dumps(error_document(error)).encode(), {"Lambda-Runtime-Function-Error-Type": "Runtime.Unknown"})
        sys.exit(1)
    while True:
        with urllib.request.urlopen(API + "/invocation/next", timeout=None) as response:
            headers = response.headers  # case-insensitive: servers send lower-case names
            event_bytes = response.read()
        context = Context(headers)
        request_id = context.aws_request_id
        os.environ["_X_AMZN_TRACE_ID"] = headers.get("Lambda-Runtime-Trace-Id", "")
        try:
            event = json.loads(event_bytes) if event_bytes else None
            result = handler(event, context)
            body = json.dumps(result).encode()
        except Exception as error:
            document = error_document(error)
            print(f"[ERROR] {document['errorType']}: {document['errorMessage']}", file=sys.stderr)
            traceback.print_exc()
            flush()
            post(f"/invocation/{request_id}/error", json.dumps(document).encode(), {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        flush()
        post(f"/invocation/{request_id}/response", body)


def with_awslambdaric():
    try:
        from awslambdaric import bootstrap
    except ImportError:
        return False
    bootstrap.run(TASK_ROOT, HANDLER, os.environ["AWS_LAMBDA_RUNTIME_API"])
    return True


if os.environ.get("FIRELAKE_LAMBDA_RIC", "1") == "0" or not with_awslambdaric():
    main()
