# Redis for the tests: sourced by scripts/services.sh, which provides log,
# apt_install, wait_for, pid_alive, stop_pidfile and $DLOCK_SERVICES_DIR.
#
#   single   127.0.0.1:16379            state in $DLOCK_SERVICES_DIR/redis
#   cluster  127.0.0.1:17001-17003      state in $DLOCK_SERVICES_DIR/redis-cluster/<port>
#            three masters, no replicas
#
# Nothing is persisted (no RDB, no AOF): the tests want a server that forgets
# everything when it restarts. Every server is started with --daemonize no in
# the background so that its PID is ours to stop; the PID files live next to
# the data.

redis_single_port=16379
redis_cluster_ports=(17001 17002 17003)

redis_ping() { # port
	[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

redis_cluster_ok() {
	redis-cli -h 127.0.0.1 -p "${redis_cluster_ports[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# redis_spawn DIR PORT [ARGS…] starts one redis-server in DIR on PORT unless
# a server started from DIR is still running.
redis_spawn() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	if pid_alive "$dir/pid" && redis_ping "$port"; then
		log "redis on :$port already running (pid $(cat "$dir/pid"))"
		return 0
	fi
	if redis_ping "$port"; then
		log "port $port answers PING but was not started from $dir: refusing to touch it"
		return 1
	fi
	(cd "$dir" && exec redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--save '' --appendonly no --daemonize no --protected-mode yes \
		--logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1) &
	echo $! >"$dir/pid"
	if ! wait_for 10 redis_ping "$port"; then
		log "redis on :$port did not start; see $dir/redis.log"
		return 1
	fi
	log "redis on :$port started (pid $(cat "$dir/pid"))"
}

svc_redis_start() {
	apt_install redis-server redis-tools
	redis_spawn "$DLOCK_SERVICES_DIR/redis" "$redis_single_port"

	local base=$DLOCK_SERVICES_DIR/redis-cluster p nodes=()
	for p in "${redis_cluster_ports[@]}"; do
		redis_spawn "$base/$p" "$p" --cluster-enabled yes \
			--cluster-config-file "$base/$p/nodes.conf" --cluster-node-timeout 5000
		nodes+=("127.0.0.1:$p")
	done
	if redis_cluster_ok; then
		log "redis cluster on ${nodes[*]} already formed"
		return 0
	fi
	log "redis cluster: creating on ${nodes[*]}"
	redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$base/create.log" 2>&1 || {
		log "redis-cli --cluster create failed; see $base/create.log"
		return 1
	}
	if ! wait_for 30 redis_cluster_ok; then
		log "redis cluster did not reach cluster_state:ok"
		return 1
	fi
	log "redis cluster ready"
}

svc_redis_stop() {
	local p rc=0
	for p in "${redis_cluster_ports[@]}"; do
		stop_pidfile "$DLOCK_SERVICES_DIR/redis-cluster/$p/pid" || rc=1
	done
	stop_pidfile "$DLOCK_SERVICES_DIR/redis/pid" || rc=1
	rm -rf "$DLOCK_SERVICES_DIR/redis" "$DLOCK_SERVICES_DIR/redis-cluster"
	return $rc
}

svc_redis_env() {
	local nodes p
	nodes=$(printf '127.0.0.1:%s,' "${redis_cluster_ports[@]}")
	echo "export DLOCK_TEST_REDIS_URL=redis://127.0.0.1:$redis_single_port/0"
	echo "export DLOCK_TEST_REDIS_CLUSTER_URL=redis://${nodes%,}"
}
