# etcd for dlock's tests (sourced by scripts/services.sh).
#
# Two independent etcd 3.4 clusters under $DLOCK_SERVICES_DIR:
#   etcd            one member: client 127.0.0.1:12379, peer 12380
#   etcd-cluster    three members: clients 127.0.0.1:22379, 22381, 22383;
#                   peers one port above each (22380, 22382, 22384)
#
# env prints DLOCK_TEST_ETCD_URL (one host:port) and DLOCK_TEST_ETCD_CLUSTER_URL
# (comma-separated host:port list, no scheme) — the endpoints a
# clientv3.Config takes after splitting on commas.
#
# Each member's exact command line is kept in <data dir>.cmd, so a test may
# restart a member identically and services.sh stop still finds it by its
# PID file. (dlock's own fault tests start private clusters instead.)
#
# The data directories live in memory (/dev/shm, linked from the state
# directory) when there is one: the tests need Raft's semantics, not fsync's
# durability, and on a loaded 2-core machine an fsync per write made the
# conformance suite's stress case miss its time budget. DLOCK_ETCD_DISK=1
# keeps the data on disk, which is what a deployment does: benchmark with it.

etcd_single_port=12379
etcd_cluster_ports=(22379 22381 22383)

# etcd_member_start NAME DIR CLIENT_PORT PEER_PORT INITIAL_CLUSTER TOKEN
etcd_member_start() {
	local name=$1 dir=$2 cport=$3 pport=$4 initial=$5 token=$6
	local pidf="$dir.pid"
	if pid_alive "$pidf"; then
		log "etcd $name already running (pid $(cat "$pidf"))"
		return 0
	fi
	[ -L "$dir" ] && [ ! -e "$dir" ] && rm -f "$dir" # its memory is gone (reboot)
	local state=new
	[ -d "$dir/member" ] && state=existing
	if [ ! -e "$dir" ] && [ "${DLOCK_ETCD_DISK:-}" != 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
		ln -s "$(mktemp -d /dev/shm/dlock-etcd-XXXXXX)" "$dir"
	fi
	mkdir -p "$dir"
	chmod 700 "$dir"
	local cmd=(etcd --name "$name" --data-dir "$dir"
		--listen-client-urls "http://127.0.0.1:$cport"
		--advertise-client-urls "http://127.0.0.1:$cport"
		--listen-peer-urls "http://127.0.0.1:$pport"
		--initial-advertise-peer-urls "http://127.0.0.1:$pport"
		--initial-cluster "$initial" --initial-cluster-token "$token"
		--initial-cluster-state "$state" --pre-vote
		--logger zap --log-level warn --log-outputs stderr)
	printf '%q ' "${cmd[@]}" >"$dir.cmd"
	nohup "${cmd[@]}" >>"$dir.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	log "etcd $name started (pid $!, client 127.0.0.1:$cport, log $dir.log)"
}

etcd_healthy() { curl -fsS --max-time 1 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }

svc_etcd_start() {
	command -v etcd >/dev/null 2>&1 || apt_install etcd-server
	local d="$DLOCK_SERVICES_DIR"
	etcd_member_start dlock-etcd "$d/etcd" $etcd_single_port $((etcd_single_port + 1)) \
		"dlock-etcd=http://127.0.0.1:$((etcd_single_port + 1))" dlock-etcd-single

	local initial="" i p
	for i in 0 1 2; do
		p=${etcd_cluster_ports[$i]}
		initial+="${initial:+,}dlock-etcd$((i + 1))=http://127.0.0.1:$((p + 1))"
	done
	for i in 0 1 2; do
		p=${etcd_cluster_ports[$i]}
		etcd_member_start "dlock-etcd$((i + 1))" "$d/etcd-cluster$((i + 1))" "$p" $((p + 1)) \
			"$initial" dlock-etcd-cluster
	done

	wait_for 30 etcd_healthy $etcd_single_port || {
		log "etcd on $etcd_single_port is not healthy; see $d/etcd.log"
		return 1
	}
	for p in "${etcd_cluster_ports[@]}"; do
		wait_for 30 etcd_healthy "$p" || {
			log "etcd cluster member on $p is not healthy; see $d/etcd-cluster*.log"
			return 1
		}
	done
}

svc_etcd_stop() {
	local d="$DLOCK_SERVICES_DIR" f
	for f in "$d/etcd" "$d/etcd-cluster1" "$d/etcd-cluster2" "$d/etcd-cluster3"; do
		stop_pidfile "$f.pid"
		[ -L "$f" ] && rm -rf "$(readlink "$f")"
		rm -rf "$f" "$f.cmd" "$f.log"
	done
}

svc_etcd_env() {
	echo "export DLOCK_TEST_ETCD_URL=127.0.0.1:$etcd_single_port"
	local IFS=,
	local eps=() p
	for p in "${etcd_cluster_ports[@]}"; do eps+=("127.0.0.1:$p"); done
	echo "export DLOCK_TEST_ETCD_CLUSTER_URL=${eps[*]}"
}
