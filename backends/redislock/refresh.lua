-- refresh: extend the lock if owner holds it (compare-and-pexpire).
--
-- KEYS[1] lock key, KEYS[2] fence key
-- ARGV[1] owner, ARGV[2] lock TTL in ms, ARGV[3] fence TTL in ms ("0": none)
--
-- Returns 1 when the lock was extended, 0 when owner does not hold it.
if redis.call('get', KEYS[1]) ~= ARGV[1] then
	return 0
end
redis.call('pexpire', KEYS[1], ARGV[2])
if ARGV[3] ~= '0' then
	redis.call('pexpire', KEYS[2], ARGV[3])
end
return 1
