-- wrk script: GET each path (with its query) of a file written before the run, cycled
-- (one path a line; wrk -s paths.lua URL -- PATHS_FILE). done() prints one WRK_JSON line.
local threads = {}
local requests_list = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

function init(args)
  local paths_file = args[1]
  if paths_file == nil then
    error("usage: wrk -s paths.lua URL -- PATHS_FILE")
  end
  wrk.headers["Accept"] = "application/fhir+json"
  for line in io.lines(paths_file) do
    if #line > 0 then
      requests_list[#requests_list + 1] = wrk.format("GET", line)
    end
  end
  if #requests_list == 0 then
    error("no paths in " .. paths_file)
  end
  -- each thread starts at a different place in the list
  counter = ((thread_index or 1) * 7919) % #requests_list
end

function request()
  counter = counter % #requests_list + 1
  return requests_list[counter]
end

local function json_summary(summary, latency)
  local e = summary.errors
  return string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout)
end

function done(summary, latency, requests)
  io.write(json_summary(summary, latency))
end
