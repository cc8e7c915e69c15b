#!/usr/bin/env bash
# The single-host benchmarks of issue 8, in one run on loopback, next to the
# CNCF reference registry:
#
#   serve_cached    a cached 1 GiB blob through an agent to curl, vs the reference
#   push            the same blob pushed to the proxy in one monolithic upload, vs the reference
#   cold_pull       time to first byte of a cold blob pulled through an agent
#   agent_memory    the agent's peak RssAnon while it downloads and serves that blob
#   tracker         announces/s against kraken-tracker, in-memory and Redis peer stores
#   concurrent_pulls  200 concurrent skopeo pulls of one image through one agent,
#                   and from the reference for comparison
#
# Every component is a separate release binary with its own config file, on
# 127.0.0.1 ports 18100-18599, so the agent's memory is its own. One JSON
# object per item goes to stdout (and to --json-out FILE), a summary to stderr.
#
# Run it on an otherwise idle machine, from anywhere in the repository:
#   bash bench/single-host.sh [--json-out FILE]
#
# Options:
#   --json-out FILE      also write the JSON lines to FILE
#   --size-mib N         size of the big blob                      [1024]
#   --get-runs N         cached GETs from each registry            [3]
#   --push-runs N        monolithic pushes to each registry, each of
#                        its own blob (seeds 1..N)                 [2]
#   --pulls N            concurrent pulls of the image              [200]
#   --tracker-seconds S  duration of each tracker load run         [10]
#   --connections N      keep-alive connections of the load generator [64]
#   --no-build           use the release binaries as they are
#   --keep               keep the state directory (stores, logs) afterwards
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)
tools="$repo_root/../shared/tools"
bin="$repo_root/target/release"

json_out=""
size_mib=1024
get_runs=3
push_runs=2
pulls=200
tracker_seconds=10
connections=64
build=1
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json-out) json_out="$2"; shift 2 ;;
        --size-mib) size_mib="$2"; shift 2 ;;
        --get-runs) get_runs="$2"; shift 2 ;;
        --push-runs) push_runs="$2"; shift 2 ;;
        --pulls) pulls="$2"; shift 2 ;;
        --tracker-seconds) tracker_seconds="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$size_mib" "$get_runs" "$push_runs" "$pulls" "$tracker_seconds" "$connections"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "counts must be positive whole numbers" >&2; exit 2; }
done
((pulls <= 500 && push_runs <= 5 && get_runs <= 10 && tracker_seconds <= 120)) \
    || { echo "at most 500 pulls, 5 push runs, 10 GET runs, 120 s of tracker load" >&2; exit 2; }
for tool in curl jq openssl skopeo redis-server docker-registry; do
    command -v "$tool" > /dev/null || { echo "needs $tool (see ../shared/tools/README.md)" >&2; exit 2; }
done

# Ports, all on 127.0.0.1.
ref_port=18500
proxy_port=18100
origin_port=18102
origin_p2p=18101
tracker_port=18103
bi_port=18104
agent0=(18200 18201 18202)   # registry, P2P, blob API
agent1=(18210 18211 18212)
bench_tracker_mem=18300
bench_tracker_redis=18301
redis_port=18379

state=/tmp/kraken-single-host
cache=/dev/shm/kraken-single-host
[[ -d /dev/shm && -w /dev/shm ]] || cache=/tmp/kraken-single-host-cache
logs="$state/logs"

# ---------------------------------------------------------------- helpers

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
# MiB per second of $1 MiB in $2 seconds.
rate() { awk -v m="$1" -v s="$2" 'BEGIN { print m / s }'; }

# Every process this script starts is recorded here and stopped on exit,
# by its pid and nothing else.
pids=()
refreg_started=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2> /dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2> /dev/null || true
    done
    if ((refreg_started)); then
        "$tools/start-reference-registry" --state-dir "$state/refreg" --stop > /dev/null 2>&1 || true
    fi
    if ((keep == 0 && rc == 0)); then
        rm -rf "$state"
    else
        log "state and logs kept in $state"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a program in the background with its output in $logs/NAME.log;
# sets $started to its pid.
spawn() {
    local name=$1
    shift
    "$@" > "$logs/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
}

# Stops one process this script started.
stop() {
    local pid=$1
    kill -TERM "$pid" 2> /dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2> /dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
}

# Waits until GET URL answers 200, for at most 30 s.
wait_http() {
    local url=$1
    for _ in $(seq 300); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url") == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "no answer from $url; logs in $logs"
    return 1
}

emitted=()
emit() {
    local line
    line=$(jq -c . <<< "$1")
    emitted+=("$line")
    printf '%s\n' "$line"
    [[ -z "$json_out" ]] || printf '%s\n' "$line" >> "$json_out"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- build

if ((build)); then
    log "== building release binaries"
    cargo build --release -p kraken-bins >&2
    cargo build --release -p kraken-p2p --example tracker_load >&2
fi
for b in kraken-origin kraken-tracker kraken-build-index kraken-proxy kraken-agent; do
    [[ -x "$bin/$b" ]] || { log "missing $bin/$b"; exit 1; }
done
load_gen="$bin/examples/tracker_load"

[[ -z "$json_out" ]] || : > "$json_out"
rm -rf "$state"
mkdir -p "$state" "$logs" "$cache"

emit "$(jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --argjson cpus "$(nproc)" --arg load "$(load_avg)" --arg kernel "$(uname -r)" \
    --arg commit "$(git rev-parse --short HEAD 2> /dev/null || echo unknown)" \
    --arg curl "$(curl --version | head -1 | cut -d' ' -f2)" --arg skopeo "$(skopeo --version | cut -d' ' -f3)" \
    '{item: "machine", date: $date, cpus: $cpus, cpu: $cpu, kernel: $kernel, commit: $commit,
      load_at_start: $load, curl: $curl, skopeo: $skopeo}')"

# ---------------------------------------------------------------- inputs

size_bytes=$((size_mib * 1024 * 1024))

# Blob N: AES-256-CTR keystream under a key derived from the seed, so every
# run (and machine) gets the same bytes.
make_blob() {
    local seed=$1 file="$cache/blob-${size_mib}m-seed$1.bin"
    if [[ ! -s "$file.sha256" || $(stat -c %s "$file" 2> /dev/null || echo 0) != "$size_bytes" ]]; then
        log "== making $file"
        local key iv
        key=$(printf 'kraken single-host blob %s' "$seed" | sha256sum | cut -c1-64)
        iv=$(printf 'iv %s' "$seed" | sha256sum | cut -c1-32)
        # openssl ends on SIGPIPE once head has enough: not a failure.
        { openssl enc -aes-256-ctr -K "$key" -iv "$iv" -nosalt < /dev/zero 2> /dev/null \
            | head -c "$size_bytes" > "$file"; } || true
        [[ $(stat -c %s "$file") == "$size_bytes" ]] || { log "could not write $file"; return 1; }
        sha256sum "$file" | cut -d' ' -f1 > "$file.sha256"
    fi
    echo "$file"
}
blobs=()
for seed in $(seq "$push_runs"); do
    blobs+=("$(make_blob "$seed")")
done
digest_of() { echo "sha256:$(cat "$1.sha256")"; }

image="$cache/image"
if [[ ! -f "$image/index.json" ]]; then
    log "== making the test image"
    "$tools/make-test-image" -o "$image" -t v1 -l 4 -s 2 --seed 8 > /dev/null
fi

# ---------------------------------------------------------------- servers

log "== starting the reference registry on 127.0.0.1:$ref_port"
refreg_started=1
"$tools/start-reference-registry" --addr "127.0.0.1:$ref_port" --state-dir "$state/refreg" --fresh > /dev/null

write_configs() {
    cat > "$state/origin.toml" << EOF
listen = "127.0.0.1:$origin_port"
[log]
level = "warn"
[origin]
addr = "127.0.0.1:$origin_port"
queue_path = "$state/origin/queue.redb"
[origin.cluster]
members = ["127.0.0.1:$origin_port"]
replicas = 1
[origin.p2p]
listen = "127.0.0.1:$origin_p2p"
[store]
root = "$state/origin/store"
capacity = "16GiB"
[[backends]]
namespace = ".*"
kind = "fs"
root = "$state/backend"
EOF
    tracker_config "$state/tracker.toml" "$tracker_port" 'kind = "memory"'
    cat > "$state/build-index.toml" << EOF
listen = "127.0.0.1:$bi_port"
[log]
level = "warn"
[build_index]
database_path = "$state/build-index/index.redb"
origins = ["127.0.0.1:$origin_port"]
[[backends]]
namespace = ".*"
kind = "fs"
root = "$state/tags"
EOF
    cat > "$state/proxy.toml" << EOF
listen = "127.0.0.1:$proxy_port"
[log]
level = "warn"
[proxy]
origins = ["127.0.0.1:$origin_port"]
build_index = ["127.0.0.1:$bi_port"]
[proxy.store]
root = "$state/proxy/store"
capacity = "16GiB"
EOF
    agent_config 0 "${agent0[@]}"
    agent_config 1 "${agent1[@]}"
}

tracker_config() {
    cat > "$1" << EOF
listen = "127.0.0.1:$2"
[log]
level = "warn"
[tracker]
origins = ["127.0.0.1:$origin_port"]
[tracker.peer_store]
$3
EOF
}

agent_config() {
    cat > "$state/agent-$1.toml" << EOF
[log]
level = "warn"
[agent]
registry_listen = "127.0.0.1:$2"
api_listen = "127.0.0.1:$4"
trackers = ["http://127.0.0.1:$tracker_port"]
build_index = ["127.0.0.1:$bi_port"]
[agent.registry]
push_to = "127.0.0.1:$proxy_port"
[agent.p2p]
listen = "127.0.0.1:$3"
[agent.store]
root = "$state/agent-$1/store"
capacity = "16GiB"
EOF
}

log "== starting origin, tracker, build-index, proxy and two agents"
write_configs
spawn origin "$bin/kraken-origin" --config "$state/origin.toml"
spawn tracker "$bin/kraken-tracker" --config "$state/tracker.toml"
wait_http "http://127.0.0.1:$origin_port/health"
spawn build-index "$bin/kraken-build-index" --config "$state/build-index.toml"
wait_http "http://127.0.0.1:$bi_port/health"
spawn proxy "$bin/kraken-proxy" --config "$state/proxy.toml"
spawn agent-0 "$bin/kraken-agent" --config "$state/agent-0.toml"
agent0_pid=$started
spawn agent-1 "$bin/kraken-agent" --config "$state/agent-1.toml"
for url in "$tracker_port/health" "$proxy_port/health" "${agent0[0]}/health" "${agent1[0]}/health"; do
    wait_http "http://127.0.0.1:$url"
done
wait_http "http://127.0.0.1:$proxy_port/v2/"
wait_http "http://127.0.0.1:$ref_port/v2/"

# Waits until the origin has written every blob back to the backend, so
# the write-back does not run under the next measurement (at most 120 s).
drain_writeback() {
    local pending metrics
    for _ in $(seq 1200); do
        metrics=$(curl -s "http://127.0.0.1:$origin_port/metrics") || true
        pending=$(awk '/^[a-z_]*writeback_pending[ {]/ { print $NF }' <<< "$metrics" | head -n 1)
        [[ "${pending:-0}" == 0 ]] && return 0
        sleep 0.1
    done
    log "write-back still pending after 120 s"
}

# ---------------------------------------------------------------- push

# One monolithic upload: POST, then a PUT with the whole body and ?digest=.
# Prints the PUT's seconds; the POST costs a round trip on either side.
push_monolithic() {
    local base=$1 repo=$2 file=$3 digest location out code seconds
    digest=$(digest_of "$file")
    location=$(curl -sS -o /dev/null -w '%header{location}' -X POST "$base/v2/$repo/blobs/uploads/")
    [[ "$location" == http* ]] || location="$base$location"
    [[ "$location" == *\?* ]] && location="$location&digest=$digest" || location="$location?digest=$digest"
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' -X PUT -T "$file" \
        -H 'Content-Type: application/octet-stream' "$location")
    read -r code seconds <<< "$out"
    [[ "$code" == 201 ]] || { log "push to $base/$repo answered $code"; return 1; }
    echo "$seconds"
}

log "== push: $push_runs x ${size_mib} MiB monolithic, reference and proxy alternating"
ref_push=() our_push=()
for i in $(seq "$push_runs"); do
    f=${blobs[i - 1]}
    sync
    t=$(push_monolithic "http://127.0.0.1:$ref_port" "bench/push-$i" "$f")
    ref_push+=("$(rate "$size_mib" "$t")")
    sync
    t=$(push_monolithic "http://127.0.0.1:$proxy_port" "bench/push-$i" "$f")
    our_push+=("$(rate "$size_mib" "$t")")
    drain_writeback
    log "   run $i: reference $(printf '%.0f' "${ref_push[-1]}") MiB/s, proxy $(printf '%.0f' "${our_push[-1]}") MiB/s"
done
ref_med=$(echo "${ref_push[*]}" | median)
our_med=$(echo "${our_push[*]}" | median)
emit "$(jq -n --argjson size "$size_bytes" --arg ref "${ref_push[*]}" --arg ours "${our_push[*]}" \
    --argjson rm "$ref_med" --argjson om "$our_med" \
    '{item: "push", what: "one monolithic upload (POST, then PUT of the whole blob with ?digest=) of a distinct blob per run; MiB/s of the PUT",
      bytes: $size,
      kraken_proxy_mib_s: ($ours | split(" ") | map(tonumber | . * 10 | round / 10)),
      reference_mib_s: ($ref | split(" ") | map(tonumber | . * 10 | round / 10)),
      kraken_median_mib_s: ($om * 10 | round / 10), reference_median_mib_s: ($rm * 10 | round / 10),
      ratio: ($om / $rm * 100 | round / 100)}')"

# ---------------------------------------------------------------- cold pull

big=${blobs[0]}
big_digest=$(digest_of "$big")
log "== cold pull of $big_digest through agent 0, RssAnon sampled every 20 ms"
base_anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$agent0_pid/status")
curl_out="$state/cold.curl"
curl -sS -o /dev/null -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' \
    "http://127.0.0.1:${agent0[0]}/v2/bench/push-1/blobs/$big_digest" > "$curl_out" &
curl_pid=$!
peak_anon=0 peak_file=0 peak_rss=0 samples=0
while kill -0 "$curl_pid" 2> /dev/null && ((samples < 30000)); do
    read -r anon file rss < <(awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } /^VmRSS:/ { r = $2 } END { print a, f, r }' "/proc/$agent0_pid/status")
    ((anon > peak_anon)) && peak_anon=$anon
    ((file > peak_file)) && peak_file=$file
    ((rss > peak_rss)) && peak_rss=$rss
    samples=$((samples + 1))
    sleep 0.02
done
wait "$curl_pid"
read -r code ttfb total got < "$curl_out" || true   # no newline at the end
[[ "$code" == 200 && "$got" == "$size_bytes" ]] || { log "cold pull answered $code with $got bytes"; exit 1; }
piece_bytes=$(( size_bytes <= 256 * 1024 * 1024 ? 128 * 1024 : size_bytes / 1024 ))
emit "$(jq -n --argjson ttfb "$ttfb" --argjson total "$total" --argjson size "$size_bytes" --argjson piece "$piece_bytes" \
    '{item: "cold_pull", what: "GET of a blob the agent does not hold, through its registry, from one origin",
      bytes: $size, piece_bytes: $piece,
      ttfb_ms: ($ttfb * 1000 * 100 | round / 100), total_s: ($total * 1000 | round / 1000),
      mib_s: ($size / 1048576 / $total | round),
      piece_time_ms: ($piece / ($size / $total) * 1000 * 100 | round / 100),
      ttfb_in_piece_times: ($ttfb / ($piece / ($size / $total)) * 10 | round / 10)}')"
emit "$(jq -n --argjson base "$base_anon" --argjson anon "$peak_anon" --argjson file "$peak_file" --argjson rss "$peak_rss" \
    --argjson samples "$samples" \
    '{item: "agent_memory", what: "kraken-agent /proc/PID/status during the cold pull, peak of samples every 20 ms",
      samples: $samples, rss_anon_before_kib: $base, rss_anon_peak_kib: $anon,
      rss_anon_peak_mib: ($anon / 1024 * 10 | round / 10), rss_file_peak_mib: ($file / 1024 * 10 | round / 10),
      vm_rss_peak_mib: ($rss / 1024 * 10 | round / 10), target_mib: 64, met: ($anon <= 65536)}')"

# ---------------------------------------------------------------- serve cached

get_mib_s() {
    local out code seconds got
    out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "$1")
    read -r code seconds got <<< "$out"
    [[ "$code" == 200 && "$got" == "$size_bytes" ]] || { log "GET $1 answered $code with $got bytes"; return 1; }
    rate "$size_mib" "$seconds"
}

log "== serve cached: $get_runs GETs of the blob from each, alternating"
ref_get=() our_get=()
# One untimed GET each, so both read the blob from the page cache.
get_mib_s "http://127.0.0.1:$ref_port/v2/bench/push-1/blobs/$big_digest" > /dev/null
get_mib_s "http://127.0.0.1:${agent0[0]}/v2/bench/push-1/blobs/$big_digest" > /dev/null
for i in $(seq "$get_runs"); do
    ref_get+=("$(get_mib_s "http://127.0.0.1:$ref_port/v2/bench/push-1/blobs/$big_digest")")
    our_get+=("$(get_mib_s "http://127.0.0.1:${agent0[0]}/v2/bench/push-1/blobs/$big_digest")")
    log "   run $i: reference $(printf '%.0f' "${ref_get[-1]}") MiB/s, agent $(printf '%.0f' "${our_get[-1]}") MiB/s"
done
ref_med=$(echo "${ref_get[*]}" | median)
our_med=$(echo "${our_get[*]}" | median)
emit "$(jq -n --argjson size "$size_bytes" --arg ref "${ref_get[*]}" --arg ours "${our_get[*]}" \
    --argjson rm "$ref_med" --argjson om "$our_med" \
    '{item: "serve_cached", what: "curl GET /v2/<repo>/blobs/<digest> of a blob in the page cache, to /dev/null",
      bytes: $size,
      kraken_agent_mib_s: ($ours | split(" ") | map(tonumber | round)),
      reference_mib_s: ($ref | split(" ") | map(tonumber | round)),
      kraken_median_mib_s: ($om | round), reference_median_mib_s: ($rm | round),
      ratio: ($om / $rm * 100 | round / 100)}')"

# ---------------------------------------------------------------- tracker

tracker_run() {
    local store=$1 port=$2 out
    wait_http "http://127.0.0.1:$port/readiness"
    out=$("$load_gen" --url "http://127.0.0.1:$port" --connections "$connections" \
        --seconds "$tracker_seconds" --threads "$(nproc)")
    emit "$(jq -c --arg store "$store" --arg load "$(load_avg)" \
        '{item: "tracker", store: $store, what: "POST /announce, incomplete peers, 100 blobs x 50 peers, load generator on the same cores"} + . + {load_after: $load}' <<< "$out")"
    log "   $store: $(jq -r '"\(.announces_per_s) announces/s, \(.errors) errors, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' <<< "$out")"
}

log "== tracker: ${tracker_seconds} s of announces over $connections connections, per peer store"
tracker_config "$state/tracker-mem.toml" "$bench_tracker_mem" 'kind = "memory"'
spawn tracker-mem "$bin/kraken-tracker" --config "$state/tracker-mem.toml"
mem_pid=$started
tracker_run memory "$bench_tracker_mem"
stop "$mem_pid"

spawn redis redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --dir "$state" --protected-mode yes
redis_pid=$started
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break
    sleep 0.1
done
tracker_config "$state/tracker-redis.toml" "$bench_tracker_redis" \
    "kind = \"redis\"
url = \"redis://127.0.0.1:$redis_port/0\"
key_prefix = \"bench:\""
spawn tracker-redis "$bin/kraken-tracker" --config "$state/tracker-redis.toml"
redis_tracker_pid=$started
tracker_run redis "$bench_tracker_redis"
stop "$redis_tracker_pid"
stop "$redis_pid"

# ---------------------------------------------------------------- concurrent pulls

# Pulls the image $pulls times at once from registry $2 into $state/pulls-$1;
# emits one JSON object.
pull_batch() {
    local who=$1 registry=$2 dir="$state/pulls-$1" started_at finished_at wall ok failed bad p50 pmax
    mkdir -p "$dir"
    pull_one() {
        local i=$1 t0 t1 rc=0
        t0=$(date +%s%N)
        skopeo --insecure-policy copy -q --src-tls-verify=false \
            "docker://$registry/bench/app:v1" "dir:$dir/$i" > "$dir/$i.log" 2>&1 || rc=$?
        t1=$(date +%s%N)
        echo "$i $rc $(((t1 - t0) / 1000000))" > "$dir/$i.result"
    }
    started_at=$(now)
    local pull_pids=()
    for i in $(seq "$pulls"); do
        pull_one "$i" &
        pull_pids+=("$!")
    done
    for pid in "${pull_pids[@]}"; do wait "$pid" || true; done
    finished_at=$(now)
    wall=$(elapsed "$started_at" "$finished_at")
    cat "$dir"/*.result > "$dir.txt"
    ok=$(awk '$2 == 0' "$dir.txt" | wc -l)
    failed=$((pulls - ok))
    if ((failed > 0)); then
        log "   $who: $failed failures, the first one:"
        awk '$2 != 0 { print $1; exit }' "$dir.txt" | xargs -I{} cat "$dir/{}.log" >&2
    fi
    # Every pulled blob must have the bytes its name says.
    bad=0
    for f in "$dir"/*/*; do
        [[ $(basename "$f") =~ ^[0-9a-f]{64}$ ]] || continue
        [[ $(sha256sum "$f" | cut -c1-64) == "$(basename "$f")" ]] || bad=$((bad + 1))
    done
    p50=$(awk '{ print $3 }' "$dir.txt" | median)
    pmax=$(awk '{ print $3 }' "$dir.txt" | sort -n | tail -n 1)
    emit "$(jq -n --arg who "$who" --argjson pulls "$pulls" --argjson ok "$ok" --argjson failed "$failed" \
        --argjson bad "$bad" --argjson wall "$wall" --argjson p50 "$p50" --argjson pmax "$pmax" \
        --arg load "$(load_avg)" --argjson bytes "$(du -sb "$image/blobs" | cut -f1)" \
        '{item: "concurrent_pulls", registry: $who,
          what: "skopeo copy docker://REGISTRY/bench/app:v1 dir:..., all started at once (agent cold); 4 layers of ~2 MiB",
          pulls: $pulls, ok: $ok, errors: $failed, blobs_with_wrong_bytes: $bad, image_bytes: $bytes,
          wall_s: ($wall * 1000 | round / 1000), pull_ms_p50: $p50, pull_ms_max: $pmax, load_after: $load}')"
    log "   $who: $ok of $pulls pulls fine in $(printf '%.2f' "$wall") s (median pull $p50 ms, slowest $pmax ms)"
    rm -rf "$dir"
}

log "== $pulls concurrent skopeo pulls of one image: through agent 1, then from the reference"
for target in "127.0.0.1:$proxy_port" "127.0.0.1:$ref_port"; do
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$image:v1" \
        "docker://$target/bench/app:v1" >&2
done
drain_writeback
pull_batch kraken_agent "127.0.0.1:${agent1[0]}"
pull_batch reference "127.0.0.1:$ref_port"

log "== summary (load now $(load_avg))"
printf '%s\n' "${emitted[@]}" | jq -r '
    if .item == "serve_cached" then "serve cached \(.bytes / 1048576) MiB: agent \(.kraken_median_mib_s) MiB/s, reference \(.reference_median_mib_s) MiB/s (x\(.ratio))"
    elif .item == "push" then "push \(.bytes / 1048576) MiB monolithic: proxy \(.kraken_median_mib_s) MiB/s, reference \(.reference_median_mib_s) MiB/s (x\(.ratio))"
    elif .item == "cold_pull" then "cold pull: first byte after \(.ttfb_ms) ms (\(.ttfb_in_piece_times) piece times of \(.piece_time_ms) ms), whole blob at \(.mib_s) MiB/s"
    elif .item == "agent_memory" then "agent memory: RssAnon peak \(.rss_anon_peak_mib) MiB (target 64 MiB), RssFile peak \(.rss_file_peak_mib) MiB"
    elif .item == "tracker" then "tracker, \(.store) store: \(.announces_per_s) announces/s, \(.errors) errors"
    elif .item == "concurrent_pulls" then "\(.pulls) concurrent pulls from \(.registry): \(.ok) fine, \(.errors) errors, \(.wall_s) s"
    else empty end' >&2
