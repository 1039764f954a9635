-- Soak load for wrk: mostly one-row predictions, some 20-row ones, 2 % invalid bodies (422 expected).
-- Prints every status code seen, latency percentiles (µs) and socket errors when done.
local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

local one = '{"features":[5.1,3.5,1.4,0.2]}'
local many = '{"instances":[' .. string.rep('[6.7,3.0,5.2,2.3],', 19) .. '[5.9,3.0,4.2,1.5]]}'
local invalid = '{"features":[1.0]}'

function request()
  counter = counter + 1
  local body = one
  if counter % 50 == 0 then
    body = invalid
  elseif counter % 7 == 0 then
    body = many
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("status %d %d\n", status, count))
  end
  local e = summary.errors
  io.write(string.format("p50 %d\np99 %d\nsocket_errors %d\n", latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
