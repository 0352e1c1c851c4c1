-- wrk script for benchmarks/serve_bench.py: POST one fixed body on every request and print a JSON summary.
--
--   wrk -t1 -c32 -d10s --latency -s benchmarks/serve_bench.lua URL -- BODY_FILE [INFERENCE_HEADER_LENGTH]
--
-- The body is read from a file (not built in Lua) so that the JSON and the binary-tensor requests are the exact
-- bytes serve_bench.py checked against the server before the load; with a second argument the request carries the
-- binary tensor data extension's Inference-Header-Content-Length. wrk builds the request once per thread, so the
-- script costs nothing per request. done() prints one line that serve_bench.py parses instead of wrk's text.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  if args[2] ~= nil then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = args[2]
  else
    wrk.headers["Content-Type"] = "application/json"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'SERVE_BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, '
    .. '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
