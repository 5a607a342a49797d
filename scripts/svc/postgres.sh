# shellcheck shell=bash
# PostgreSQL 15 on 127.0.0.1:15432 and PgBouncer (transaction pooling) on
# 127.0.0.1:16432 in front of it, for the pglock tests. Sourced by
# scripts/services.sh, which provides log, apt_install, wait_for, pid_alive,
# stop_pidfile and $DLOCK_SERVICES_DIR.
#
# Both run as the postgres user (PostgreSQL refuses root) from
# $DLOCK_SERVICES_DIR/postgres. Loopback connections are trusted: this is a
# throwaway test server, never a production setup (fsync is off too).

pg_port=15432
pgb_port=16432
pg_bin=/usr/lib/postgresql/15/bin

pg_dir() { printf '%s/postgres' "$DLOCK_SERVICES_DIR"; }

# pg_as runs a command as the postgres user.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_ready() { "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -d postgres -U postgres; }

svc_postgres_start() {
	apt_install postgresql-15 pgbouncer
	local dir data
	dir=$(pg_dir)
	data=$dir/data
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"

	if pid_alive "$dir/postgres.pid" && pg_ready; then
		log "postgres already running (pid $(cat "$dir/postgres.pid"))"
	else
		if [ ! -f "$data/PG_VERSION" ]; then
			log "initdb $data"
			pg_as "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
				{ cat "$dir/initdb.log" >&2; return 1; }
			cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$dir'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
log_min_messages = warning
CONF
			# Loopback TCP only; initdb's --auth=trust already trusts it.
			printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$data/pg_hba.conf"
		fi
		rm -f "$data/postmaster.pid" 2>/dev/null || true
		pg_as "$pg_bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 start >&2 ||
			{ tail -20 "$dir/postgres.log" >&2; return 1; }
		head -1 "$data/postmaster.pid" >"$dir/postgres.pid"
		wait_for 30 pg_ready || { log "postgres did not become ready"; return 1; }
		log "postgres started (pid $(cat "$dir/postgres.pid")) on 127.0.0.1:$pg_port"
	fi
	if ! pg_as "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = 'dlock'" | grep -q 1; then
		pg_as "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc 'CREATE DATABASE dlock' >&2
	fi

	if pid_alive "$dir/pgbouncer.pid"; then
		log "pgbouncer already running (pid $(cat "$dir/pgbouncer.pid"))"
		return 0
	fi
	cat >"$dir/pgbouncer.ini" <<INI
[databases]
dlock = host=127.0.0.1 port=$pg_port dbname=dlock user=postgres
postgres = host=127.0.0.1 port=$pg_port dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $dir/pgbouncer.users
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
INI
	printf '"postgres" ""\n' >"$dir/pgbouncer.users"
	[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir/pgbouncer.ini" "$dir/pgbouncer.users"
	pg_as pgbouncer -q -d "$dir/pgbouncer.ini" >&2 || { tail -20 "$dir/pgbouncer.log" >&2; return 1; }
	wait_for 10 pid_alive "$dir/pgbouncer.pid" || { log "pgbouncer did not start"; return 1; }
	wait_for 10 "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pgb_port" -d dlock -U postgres ||
		{ log "pgbouncer does not answer"; return 1; }
	log "pgbouncer started (pid $(cat "$dir/pgbouncer.pid")) on 127.0.0.1:$pgb_port, transaction pooling"
}

svc_postgres_stop() {
	local dir
	dir=$(pg_dir)
	stop_pidfile "$dir/pgbouncer.pid" 10
	if pid_alive "$dir/postgres.pid"; then
		# SIGINT is PostgreSQL's fast shutdown: it does not wait for clients.
		kill -INT "$(cat "$dir/postgres.pid")" 2>/dev/null || true
	fi
	stop_pidfile "$dir/postgres.pid" 20
	rm -rf "$dir"
}

svc_postgres_env() {
	printf "export DLOCK_TEST_POSTGRES_URL='%s'\n" "postgres://postgres@127.0.0.1:$pg_port/dlock?sslmode=disable"
	printf "export DLOCK_TEST_PGBOUNCER_URL='%s'\n" "postgres://postgres@127.0.0.1:$pgb_port/dlock?sslmode=disable"
}
