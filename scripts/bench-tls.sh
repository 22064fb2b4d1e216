#!/usr/bin/env bash
# TLS rows for BENCH.md: put-64 and get-64 on 3 members, this etcd against etcd 3.4, each with
# client and peer TLS (peers authenticated by certificate) and in plaintext, alternating the
# servers round by round. Needs etcd 3.4 (`apt-get install -y etcd-server`), openssl and
# `cargo build --release`.
#
#   scripts/bench-tls.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
seconds=${2:-8}
work=$(mktemp -d /tmp/bench-tls.XXXXXX)
trap 'pkill -f "$work" || true; rm -rf "$work"' EXIT
ours=$PWD/target/release/etcd
bench=$PWD/target/release/etcd-bench
theirs=/usr/bin/etcd

# A CA and one certificate for 127.0.0.1, good for serving and dialling.
(
    cd "$work"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout m.key -out m.csr -subj /CN=member 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
    openssl x509 -req -in m.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out m.pem -days 2 -extfile ext.cnf 2>/dev/null
)

# start <binary> <tls: 0|1> <dir>: three members on ports 4x379/4x380; prints the endpoints.
start() {
    local binary=$1 tls=$2 dir=$3 scheme=http cluster="" endpoints="" extra=()
    [ "$tls" = 1 ] && scheme=https
    if [ "$tls" = 1 ]; then
        extra=(--cert-file "$work/m.pem" --key-file "$work/m.key" --client-cert-auth --trusted-ca-file "$work/ca.pem"
            --peer-cert-file "$work/m.pem" --peer-key-file "$work/m.key" --peer-client-cert-auth --peer-trusted-ca-file "$work/ca.pem")
    fi
    [ "$binary" = "$theirs" ] && extra+=(--enable-v2=true)
    for i in 1 2 3; do cluster+="b$i=$scheme://127.0.0.1:4${i}380,"; done
    for i in 1 2 3; do
        "$binary" --name "b$i" --data-dir "$dir/b$i" \
            --listen-client-urls "$scheme://127.0.0.1:4${i}379" --advertise-client-urls "$scheme://127.0.0.1:4${i}379" \
            --listen-peer-urls "$scheme://127.0.0.1:4${i}380" --initial-advertise-peer-urls "$scheme://127.0.0.1:4${i}380" \
            --initial-cluster "${cluster%,}" --snapshot-count 10000 "${extra[@]}" >"$dir.b$i.log" 2>&1 &
        endpoints+="$scheme://127.0.0.1:4${i}379,"
    done
    echo "${endpoints%,}"
}

run() {
    local name=$1 binary=$2 tls=$3 workload=$4 dir
    dir=$(mktemp -d "$work/$name.XXXX")
    local endpoints
    endpoints=$(start "$binary" "$tls" "$dir")
    local auth=()
    [ "$tls" = 1 ] && auth=(--cacert "$work/ca.pem" --cert "$work/m.pem" --key "$work/m.key")
    # Every member must answer before the run (a port still held by the last cluster would
    # leave one out).
    local curl_auth=()
    [ "$tls" = 1 ] && curl_auth=(--cacert "$work/ca.pem" --cert "$work/m.pem" --key "$work/m.key")
    for ep in ${endpoints//,/ }; do
        for _ in $(seq 1 150); do
            curl -sf "${curl_auth[@]}" "$ep/v2/keys/" >/dev/null 2>&1 && break
            sleep 0.2
        done
    done
    local out
    out=$("$bench" --endpoints "$endpoints" "${auth[@]}" --workload "$workload" --clients 64 --duration "${seconds}s" --json)
    pkill -f "$dir" || true
    while pgrep -f "$dir" >/dev/null; do sleep 0.2; done
    local tp p99
    tp=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(round(r["throughput"]), "" if r["invalid"] is None else "INVALID: " + r["invalid"])' "$out")
    p99=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["p99_ms"])' "$out" 2>/dev/null || echo "?")
    echo "$name tls=$tls $workload-64 ${tp}/s p99=${p99}ms"
}

for round in $(seq 1 "$rounds"); do
    for tls in 1 0; do
        for workload in put get; do
            if [ $((round % 2)) = 1 ]; then
                run ours "$ours" "$tls" "$workload"; run etcd "$theirs" "$tls" "$workload"
            else
                run etcd "$theirs" "$tls" "$workload"; run ours "$ours" "$tls" "$workload"
            fi
        done
    done
done
