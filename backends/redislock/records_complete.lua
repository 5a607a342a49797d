-- once.Store Complete: record the completion of the run with a token, if
-- the key is not complete and its fence is still that token.
--
-- KEYS[1] record hash; ARGV[1] token (decimal), ARGV[2] retention in ms
-- ("0": forever)
--
-- Returns 1 when recorded, 0 otherwise.
if redis.call('hexists', KEYS[1], 'd') == 1 then
	return 0
end
if redis.call('hget', KEYS[1], 'f') ~= ARGV[1] then
	return 0
end
redis.call('hset', KEYS[1], 'd', ARGV[1])
if ARGV[2] == '0' then
	redis.call('persist', KEYS[1])
else
	redis.call('pexpire', KEYS[1], ARGV[2])
end
return 1
