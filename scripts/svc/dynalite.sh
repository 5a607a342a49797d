# dynalite for the tests: a DynamoDB-compatible server on Node.js, kept in
# memory. Sourced by scripts/services.sh, which provides log, wait_for,
# pid_alive, stop_pidfile and $DLOCK_SERVICES_DIR.
#
#   127.0.0.1:18000    state (PID file, log) in $DLOCK_SERVICES_DIR/dynalite
#
# The npm package is installed, at a pinned version, into a cache directory
# outside the state directory ($DLOCK_DYNALITE_HOME, default
# ~/.cache/dlock/dynalite-<version>), so that stop, which removes the state,
# does not make the next start download it again. Node.js and npm must be on
# the machine (Debian's nodejs and npm packages are installed when missing).
#
# No --path: tables live in memory and vanish with the process. Creating,
# deleting and updating a table take no time (dynalite simulates DynamoDB's
# CREATING → ACTIVE delay unless told otherwise). The server accepts any
# credentials and any region; the tests sign with fixed dummy keys.

dynalite_version=4.0.0
dynalite_port=18000

dynalite_home() {
	echo "${DLOCK_DYNALITE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/dlock/dynalite-$dynalite_version}"
}

# dynalite_up tells whether something answers DynamoDB's protocol on the
# port: an unsigned request is refused with a DynamoDB error body.
dynalite_up() {
	curl -sS --max-time 1 -X POST "http://127.0.0.1:$dynalite_port/" \
		-H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
		-H 'Content-Type: application/x-amz-json-1.0' -d '{}' 2>/dev/null |
		grep -q '__type'
}

dynalite_install() {
	local home
	home=$(dynalite_home)
	[ -x "$home/node_modules/.bin/dynalite" ] && return 0
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		apt_install nodejs npm
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	if [ "$major" -lt 20 ]; then
		log "dynalite $dynalite_version needs Node.js 20 or later; node is $(node --version)"
		return 1
	fi
	log "npm install dynalite@$dynalite_version into $home"
	mkdir -p "$home"
	[ -f "$home/package.json" ] || echo '{"private":true}' >"$home/package.json"
	npm install --prefix "$home" --no-audit --no-fund --loglevel=error \
		"dynalite@$dynalite_version" >&2 || {
		log "npm install dynalite@$dynalite_version failed"
		return 1
	}
}

svc_dynalite_start() {
	local dir=$DLOCK_SERVICES_DIR/dynalite
	mkdir -p "$dir"
	if pid_alive "$dir/pid" && dynalite_up; then
		log "dynalite on :$dynalite_port already running (pid $(cat "$dir/pid"))"
		return 0
	fi
	if dynalite_up; then
		log "port $dynalite_port answers DynamoDB but was not started from $dir: refusing to touch it"
		return 1
	fi
	dynalite_install
	local home
	home=$(dynalite_home)
	nohup node "$home/node_modules/dynalite/cli.js" --host 127.0.0.1 --port "$dynalite_port" \
		--createTableMs 0 --deleteTableMs 0 --updateTableMs 0 \
		>>"$dir/dynalite.log" 2>&1 </dev/null &
	echo $! >"$dir/pid"
	if ! wait_for 30 dynalite_up; then
		log "dynalite on :$dynalite_port did not start; see $dir/dynalite.log"
		return 1
	fi
	log "dynalite on :$dynalite_port started (pid $(cat "$dir/pid"))"
}

svc_dynalite_stop() {
	stop_pidfile "$DLOCK_SERVICES_DIR/dynalite/pid"
	rm -rf "$DLOCK_SERVICES_DIR/dynalite"
}

svc_dynalite_env() {
	echo "export DLOCK_TEST_DYNAMODB_URL=http://127.0.0.1:$dynalite_port"
}
