-- wrk script: each connection waits WRK_DELAY_MS between requests (bench_filter.py's half-load run).
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS")) or 5

function delay()
  return delay_ms
end
