-- wrk script: POST /fhir/Patient with bodies read from an NDJSON file (one Patient a line;
-- the SQL floor inserts the same bodies). wrk -s create.lua URL -- BODIES_FILE
-- done() prints one WRK_JSON line; non-2xx/3xx answers count as errors.status.
local threads = {}
local requests_list = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

function init(args)
  local bodies_file = args[1]
  if bodies_file == nil then
    error("usage: wrk -s create.lua URL -- BODIES_FILE")
  end
  wrk.headers["Content-Type"] = "application/fhir+json"
  wrk.headers["Accept"] = "application/fhir+json"
  for line in io.lines(bodies_file) do
    if #line > 0 then
      requests_list[#requests_list + 1] = wrk.format("POST", "/fhir/Patient", nil, line)
    end
  end
  if #requests_list == 0 then
    error("no bodies in " .. bodies_file)
  end
  counter = ((thread_index or 1) * 7919) % #requests_list
end

function request()
  counter = counter % #requests_list + 1
  return requests_list[counter]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
