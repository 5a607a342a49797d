-- once.Store Done: the token of the completed run, or false.
--
-- KEYS[1] record hash
return redis.call('hget', KEYS[1], 'd')
