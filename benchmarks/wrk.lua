-- wrk script for the servekit benchmark: the same closed loop as shared/bench/post.lua, plus
--   * the body file is read in binary mode ("rb"), so OIP binary tensor bodies go out byte-exact;
--   * $CONTENT_TYPE (default application/json) and $EXTRA_HEADERS ("Name: value" lines) are sent;
--   * with $COUNT_STATUS=1, responses are counted by status class (2xx/4xx/5xx). Defining
--     response() costs wrk some CPU, so it is only defined when asked for.
-- At the end one machine-readable line is printed (errors = status >= 400 + socket errors).
local f = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE not set"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
for name, value in string.gmatch(os.getenv("EXTRA_HEADERS") or "", "([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if os.getenv("COUNT_STATUS") == "1" then
  s2xx, s4xx, s5xx, sother = 0, 0, 0, 0
  function response(status, headers, body)
    if status >= 200 and status < 300 then
      s2xx = s2xx + 1
    elseif status >= 400 and status < 500 then
      s4xx = s4xx + 1
    elseif status >= 500 then
      s5xx = s5xx + 1
    else
      sother = sother + 1
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  local classes = ""
  if os.getenv("COUNT_STATUS") == "1" then
    local c2, c4, c5, co = 0, 0, 0, 0
    for _, thread in ipairs(threads) do
      c2 = c2 + thread:get("s2xx")
      c4 = c4 + thread:get("s4xx")
      c5 = c5 + thread:get("s5xx")
      co = co + thread:get("sother")
    end
    classes = string.format(" s2xx=%d s4xx=%d s5xx=%d sother=%d", c2, c4, c5, co)
  end
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d requests=%d non2xx=%d sockerr=%d%s\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, e.status + sock, summary.requests, e.status, sock, classes))
end
