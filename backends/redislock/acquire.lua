-- acquire: take the lock and hand out a fencing token, in one step.
--
-- KEYS[1] lock key, KEYS[2] fence key (same hash slot)
-- ARGV[1] owner, ARGV[2] lock TTL in ms, ARGV[3] fence TTL in ms ("0": none)
--
-- Returns the token (an integer) when the lock was taken, false when another
-- owner holds it.
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	-- The client may be retrying an attempt whose reply it lost: owners are
	-- unique per attempt, so a lock already ours is that attempt's success.
	if redis.call('get', KEYS[1]) == ARGV[1] then
		return tonumber(redis.call('get', KEYS[2]) or '0')
	end
	return false
end
-- The token is max(last + 1, server time in µs): strictly increasing while
-- the fence key lives, and larger than any token handed out before a
-- restart that lost the fence key, as long as the server clock does not go
-- back. Integers stay below 2^53, so Lua's doubles hold them exactly.
--
-- The common case costs one write: the clock, as a decimal string built
-- without string.format, replaces the last token (SET … GET reads it in the
-- same call). Only when the last token is not below the clock (two
-- acquisitions in one µs, a clock that went back) is the counter written
-- again, with last + 1.
local t = redis.call('time')
local now = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local last
if ARGV[3] == '0' then
	last = redis.call('set', KEYS[2], now, 'GET')
else
	last = redis.call('set', KEYS[2], now, 'PX', ARGV[3], 'GET')
end
local token = tonumber(now)
last = last and tonumber(last)
if last and last >= token then
	token = last + 1
	if ARGV[3] == '0' then
		redis.call('set', KEYS[2], string.format('%.0f', token))
	else
		redis.call('set', KEYS[2], string.format('%.0f', token), 'PX', ARGV[3])
	end
end
return token
