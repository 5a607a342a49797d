# ZooKeeper for dlock's tests (sourced by scripts/services.sh, which provides
# log, apt_install, wait_for, pid_alive, stop_pidfile and $DLOCK_SERVICES_DIR).
#
#   standalone   127.0.0.1:12181         state in $DLOCK_SERVICES_DIR/zookeeper
#
# Debian's zookeeper package (3.8) runs on the machine's Java. The server is
# started as ZooKeeperServerMain (standalone, no quorum code) in the
# background with its own zoo.cfg, so that its PID is ours to stop; the admin
# server (Jetty, :8080 by default) is disabled, and the four-letter words
# `ruok` and `srvr` are allowed so that readiness can be checked (srvr).
#
# Timing, chosen for tests with short sessions:
#   tickTime=100           the server's unit of time: it checks for expired
#                          sessions every tick, so expiry is precise to 0.1 s
#   minSessionTimeout=200  two ticks (ZooKeeper's own floor): a test can let a
#                          session expire in well under a second
#   maxSessionTimeout=60000
#                          the default would be 20 ticks = 2 s; the conformance
#                          suite's one-minute TTLs need sessions of a minute
# A deployment keeps tickTime=2000 (sessions of 4 s to 40 s); zklock's
# defaults assume those bounds.
#
# The data (snapshots and transaction log) lives on disk under the state
# directory: a restart keeps every znode and the zxid counter, which is what
# a fencing test across restarts needs. The server does not fsync its log
# (forceSync=no): the tests need ZooKeeper's semantics, not its durability
# against a power cut, and an fsync per write (about 1 ms here) dominated
# every lock operation. A killed server still finds its log in the page
# cache. DLOCK_ZK_FSYNC=1 keeps the fsync, which is what a deployment does:
# benchmark with both.

zk_port=12181

# zk_ok asks the server `srvr`, which reports a zxid only once the server
# serves clients (`ruok` answers `imok` earlier, while sessions are still
# refused).
zk_ok() {
	local out
	out=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$zk_port && printf srvr >&3 && cat <&3" 2>/dev/null) || true
	[[ $out == *$'\nZxid: '* ]]
}

# zk_classpath prints the server's class path: the configuration directory
# $1, Debian's zookeeper.jar (whose manifest names the jars it needs) and a
# logging backend for slf4j.
zk_classpath() {
	local cp=$1:/usr/share/java/zookeeper.jar
	[ -f /usr/share/java/slf4j-simple.jar ] && cp+=:/usr/share/java/slf4j-simple.jar
	echo "$cp"
}

svc_zookeeper_start() {
	command -v java >/dev/null 2>&1 || apt_install default-jre-headless
	[ -f /usr/share/java/zookeeper.jar ] || apt_install zookeeper
	local dir=$DLOCK_SERVICES_DIR/zookeeper
	if pid_alive "$dir/pid" && zk_ok; then
		log "zookeeper on :$zk_port already running (pid $(cat "$dir/pid"))"
		return 0
	fi
	if zk_ok; then
		log "port $zk_port answers srvr but was not started from $dir: refusing to touch it"
		return 1
	fi
	mkdir -p "$dir/data"
	cat >"$dir/zoo.cfg" <<EOF
tickTime=100
minSessionTimeout=200
maxSessionTimeout=60000
dataDir=$dir/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
autopurge.purgeInterval=0
forceSync=$([ "${DLOCK_ZK_FSYNC:-}" = 1 ] && echo yes || echo no)
EOF
	nohup java -Xmx256m -XX:+UseSerialGC -Dzookeeper.jmx.log4j.disable=true \
		-Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
		-cp "$(zk_classpath "$dir")" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" \
		>>"$dir/zookeeper.log" 2>&1 </dev/null &
	echo $! >"$dir/pid"
	if ! wait_for 60 zk_ok; then
		log "zookeeper on :$zk_port did not start; see $dir/zookeeper.log"
		return 1
	fi
	log "zookeeper on :$zk_port started (pid $(cat "$dir/pid"))"
}

svc_zookeeper_stop() {
	local dir=$DLOCK_SERVICES_DIR/zookeeper rc=0
	stop_pidfile "$dir/pid" || rc=1
	rm -rf "$dir"
	return $rc
}

svc_zookeeper_env() {
	echo "export DLOCK_TEST_ZK_URL=127.0.0.1:$zk_port"
}
