-- HTTP/1.1 pipelining for wrk: every write carries DEPTH requests back to back, and wrk counts
-- each of the DEPTH responses as one request (its response parser reads them in order).
--   wrk -s pipeline.lua URL -- DEPTH PATH        (defaults: 16, /index.html)
local depth, path = 16, "/index.html"

init = function(args)
   depth = tonumber(args[1]) or depth
   path = args[2] or path
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format("GET", path)
   end
   req = table.concat(r)
end

request = function()
   return req
end
