#!/usr/bin/env bash
# Make sure the servers the tests talk to are up on 127.0.0.1: PostgreSQL and Redis.
# Starts them with the machine's own commands when they are installed but stopped, and
# installs them from Debian's packages when missing (root only). Never touches a server
# that is already answering.
set -euo pipefail

pg_host=127.0.0.1 pg_port=5432
redis_host=127.0.0.1 redis_port=6379

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 60); do port_open "$1" "$2" && return 0; sleep 0.5; done
    return 1
}
apt_install() {
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
    else
        echo "missing $* and not root: install it, or point IOC_TEST_* at a running server" >&2
        return 1
    fi
}

if ! port_open $pg_host $pg_port; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    ver=$(ls /etc/postgresql | sort -V | tail -1)
    echo "starting PostgreSQL $ver" >&2
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    wait_port $pg_host $pg_port || { echo "PostgreSQL did not come up on $pg_host:$pg_port" >&2; exit 1; }
fi

if ! port_open $redis_host $redis_port; then
    command -v redis-server >/dev/null || apt_install redis-server
    echo "starting Redis" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $redis_port --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port $redis_host $redis_port || { echo "Redis did not come up" >&2; exit 1; }
fi
echo "services: PostgreSQL $pg_host:$pg_port, Redis $redis_host:$redis_port"
