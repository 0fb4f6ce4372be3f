-- Write mix for wrk: each request links or unlinks one of the bench org's free
-- numbers on the bench app, alternating per number, so every request is a
-- durable write. Each thread owns its own range of numbers and cycles
-- through more numbers than it has connections, so one number never has
-- two requests in flight. Env: KEY, APP, FREE_FIRST (+917NNNNNNNNN), POOL.
local counter = 0
local threads = {}

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

function init(args)
    key = os.getenv("KEY")
    app = os.getenv("APP")
    pool = tonumber(os.getenv("POOL") or "50")
    first = tonumber(string.sub(os.getenv("FREE_FIRST"), 5))
    base = first + id * pool
    linked = {}
    i = 0
    ok = 0
    bad = 0
end

function request()
    local n = base + (i % pool)
    i = i + 1
    local num = string.format("+917%09d", n)
    local headers = { ["X-API-Key"] = key, ["Content-Type"] = "application/json" }
    if linked[n] then
        linked[n] = false
        return wrk.format("DELETE", "/sfvopi/apps/" .. app .. "/numbers/%2B" .. string.sub(num, 2), headers)
    end
    linked[n] = true
    return wrk.format("POST", "/sfvopi/apps/" .. app .. "/numbers", headers,
        '{"voip_number":"' .. num .. '"}')
end

function response(status, headers, body)
    if status == 200 then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
    local total_ok, total_bad = 0, 0
    for _, t in ipairs(threads) do
        total_ok = total_ok + t:get("ok")
        total_bad = total_bad + t:get("bad")
    end
    io.write(string.format("writes_ok %d\nwrites_not_200 %d\n", total_ok, total_bad))
end
