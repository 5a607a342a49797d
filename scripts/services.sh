#!/usr/bin/env bash
# Starts, stops and describes the real stores the tests run against.
#
#   scripts/services.sh start   install (apt) if missing, then start every store
#   scripts/services.sh stop    stop what start started (by PID), remove the data
#   scripts/services.sh env     print `export DLOCK_TEST_…_URL=…` lines
#
# A command may name stores to act on only those: `services.sh start redis`.
#
# Everything listens on 127.0.0.1 on non-default ports and lives under one
# state directory ($DLOCK_SERVICES_DIR, default /tmp/dlock-services). Each
# store is a file in scripts/svc/ that defines svc_<name>_start, _stop and
# _env; this script only dispatches. start is idempotent: a store that is
# already answering is left alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DLOCK_SERVICES_DIR=${DLOCK_SERVICES_DIR:-/tmp/dlock-services}
mkdir -p "$DLOCK_SERVICES_DIR"

# log prints to stderr so that `env` output stays clean.
log() { printf 'services: %s\n' "$*" >&2; }

# apt_install installs Debian packages that are missing, running
# `apt-get update` at most once per state directory.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		log "need root to apt-get install ${missing[*]}"
		return 1
	fi
	if [ ! -f "$DLOCK_SERVICES_DIR/.apt-updated" ]; then
		log "apt-get update"
		apt-get update -qq >&2
		touch "$DLOCK_SERVICES_DIR/.apt-updated"
	fi
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# wait_for runs a command until it succeeds, for up to $1 seconds.
wait_for() {
	local secs=$1
	shift
	local i
	for ((i = 0; i < secs * 10; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}

# pid_alive tells whether the PID stored in file $1 is a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile stops the process whose PID is in file $1 (TERM, then KILL
# after $2 seconds, default 10) and removes the file.
stop_pidfile() {
	local f=$1 secs=${2:-10} pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < secs * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

services=()
for f in "$here"/svc/*.sh; do
	[ -e "$f" ] || continue
	# shellcheck source=/dev/null
	. "$f"
	services+=("$(basename "$f" .sh)")
done

cmd=${1:-}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
	for s in "$@"; do
		[ -f "$here/svc/$s.sh" ] || { echo "services: unknown store $s" >&2; exit 2; }
	done
	services=("$@")
fi
case "$cmd" in
start)
	for s in "${services[@]}"; do "svc_${s}_start"; done
	;;
stop)
	rc=0
	for s in "${services[@]}"; do "svc_${s}_stop" || rc=1; done
	exit $rc
	;;
env)
	for s in "${services[@]}"; do "svc_${s}_env"; done
	;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
