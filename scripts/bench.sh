#!/usr/bin/env bash
# Upload benchmark on this machine: tusgate vs stock tusd v2.9.1 vs direct S3
# multipart uploads, all into the same versitygw served over HTTPS on
# 127.0.0.1 (throw-away CA, AWS_CA_BUNDLE; or plain HTTP with
# BENCH_S3_HTTP=1), A/B interleaved, medians of BENCH_REPEAT runs. Prints a
# Markdown report and keeps a copy (with the raw JSON results) in
# .cache/bench/.
#
#   bash scripts/bench.sh                      # everything (about 6–10 minutes on 2 cores)
#   BENCH_SIZE=256MiB BENCH_REPEAT=1 bash scripts/bench.sh   # quick look
#   BENCH_SCENARIOS="single" bash scripts/bench.sh           # only the 1 GiB upload
#
# Scenarios (BENCH_SCENARIOS, space-separated, run in the order given):
#   single  1 upload of BENCH_SIZE (1GiB), one PATCH
#   conc    BENCH_CONC (8) concurrent uploads of BENCH_CONC_SIZE (128MiB)
#   many    BENCH_MANY (200) concurrent uploads of 1MiB
#   small   BENCH_SMALL_N (500) creation-with-upload POSTs of 64KiB,
#           BENCH_SMALL_CONC (16) at a time
#   direct  BENCH_DIRECT (8) concurrent uploads of BENCH_DIRECT_SIZE (1GiB):
#           tusgate (tus), tusgate-direct (tusgate's /s3/ routes: tusgate
#           signs each part, the client PUTs it straight to S3;
#           --direct-uploads) and s3-direct, to compare the gateway's CPU
#           per GiB when it carries the bytes and when it only signs
#   series  tusgate and tusd (no direct S3) at each concurrency level of
#           BENCH_SERIES ("8x128MiB 64x32MiB 256x8MiB": concurrent uploads
#           x size of each), to see how CPU/GiB, throughput and peak RSS
#           follow the number of uploads in flight
#   head    BENCH_HEADS (200) HEADs, one at a time, on an upload of
#           BENCH_HEAD_PARTS (2000) parts of 5MiB (filled with one PATCH of
#           10 GiB; tusgate and tusd are restarted with 5MiB parts for it;
#           one round whatever BENCH_REPEAT says)
#
# Servers run with their default settings (tusgate: --dev for tokens, auth
# on; tusd: no auth). Every process the script starts is stopped by its PID
# and every file it creates (S3 data included) lives in one temp dir that is
# removed at the end, also on Ctrl-C. BENCH_TMP picks its parent (default
# $TMPDIR or /tmp); it needs a few GiB free there, 12 GiB with "head".
#
# BENCH_CHECKSUM=ALG: tusgate's PATCHes carry Upload-Checksum with ALG
# (sha256, sha1, md5, crc32; tus's checksum extension, which stock tusd
# does not have): the client hashes each body before it sends it, and
# tusgate checks it. Compare tusgate's server CPU/GiB with a run without.
#
# BENCH_OBJECT_SHA256=1: tusgate runs with --object-sha256 (the SHA-256 of
# every upload, computed as its bytes arrive; docs/integrity.md). Compare
# tusgate's server CPU/GiB with a run without (same as
# BENCH_TUSGATE_ARGS=--object-sha256).
#
# BENCH_TUSGATE_ARGS: extra tusgate flags for the whole run (word-split),
# e.g. "--s3-part-size 16MiB"; the report's command line shows them.
#
# BENCH_PIN=1: versitygw runs alone on CPU 0, everything else (the client,
# tusgate, tusd) on CPU 1 (taskset). The S3 server then has the same
# capacity whichever target uploads, as when S3 is another machine: the
# ratios to s3-direct show what the gateway costs the upload, not what its
# CPU takes from a shared S3 server.
#
# BENCH_S3_HTTP=1: versitygw is served over plain HTTP instead (as MinIO is
# by default). The S3 clients then sign every payload's SHA-256 instead of
# sending it unsigned with a CRC32 trailer, which costs them CPU.
#
# BENCH_PROFILE=N: tusgate runs with --pprof and tusd with -expose-pprof,
# and during every timed tusgate and tusd run a CPU profile of N seconds is
# taken (start it with a scenario that lasts longer, e.g. BENCH_SIZE=4GiB).
# The profiles are kept in .cache/bench/ next to the report; read them with
# "go tool pprof -top FILE". Profiling costs a little CPU of its own.
#
# Before each run the script waits until the machine is nearly idle (at most
# BENCH_QUIET_WAIT, 60 s): other programs' CPU use is measured with ours. The
# report names the runs that were disturbed anyway.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The settings given, for the command printed with the report.
REPRO=""
for v in BENCH_SIZE BENCH_REPEAT BENCH_SCENARIOS BENCH_CONC BENCH_CONC_SIZE BENCH_SERIES BENCH_MANY BENCH_SMALL_N \
	BENCH_SMALL_CONC BENCH_DIRECT BENCH_DIRECT_SIZE BENCH_DIRECT_PART BENCH_HEAD_PARTS BENCH_HEADS BENCH_TIMEOUT BENCH_TMP BENCH_QUIET_WAIT BENCH_PROFILE BENCH_TUSGATE_ARGS BENCH_PIN \
	BENCH_S3_HTTP BENCH_CHECKSUM BENCH_OBJECT_SHA256; do
	if [[ -n ${!v:-} ]]; then REPRO+="$v=${!v@Q} "; fi
done

BENCH_SIZE=${BENCH_SIZE:-1GiB}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_SCENARIOS=${BENCH_SCENARIOS:-single conc many small head}
BENCH_CONC=${BENCH_CONC:-8}
BENCH_CONC_SIZE=${BENCH_CONC_SIZE:-128MiB}
BENCH_SERIES=${BENCH_SERIES:-8x128MiB 64x32MiB 256x8MiB}
BENCH_MANY=${BENCH_MANY:-200}
BENCH_SMALL_N=${BENCH_SMALL_N:-500}
BENCH_SMALL_CONC=${BENCH_SMALL_CONC:-16}
BENCH_DIRECT=${BENCH_DIRECT:-8}
BENCH_DIRECT_SIZE=${BENCH_DIRECT_SIZE:-1GiB}
BENCH_DIRECT_PART=${BENCH_DIRECT_PART:-16MiB}
BENCH_HEAD_PARTS=${BENCH_HEAD_PARTS:-2000}
BENCH_HEADS=${BENCH_HEADS:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-10m}
BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
BENCH_TMP=${BENCH_TMP:-${TMPDIR:-/tmp}}
BENCH_PROFILE=${BENCH_PROFILE:-0}
read -r -a TUSGATE_ARGS <<<"${BENCH_TUSGATE_ARGS:-}"
if [[ ${BENCH_OBJECT_SHA256:-} == 1 ]]; then TUSGATE_ARGS+=(--object-sha256); fi
PIN_S3=() PIN_REST=()
if [[ ${BENCH_PIN:-0} == 1 ]]; then
	(($(nproc) >= 2)) || { echo "bench: BENCH_PIN needs 2 CPUs" >&2; exit 2; }
	command -v taskset >/dev/null || { echo "bench: BENCH_PIN needs taskset (util-linux)" >&2; exit 2; }
	PIN_S3=(taskset -c 0) PIN_REST=(taskset -c 1)
fi

TUSD_VERSION=v2.9.1
VERSITYGW_VERSION=v1.8.0
BIN="$ROOT/.cache/bin"
MACHINE_BIN="${XDG_CACHE_HOME:-${HOME:-$(cd ~ && pwd)}/.cache}/tusgate/bin"
OUTDIR="$ROOT/.cache/bench"

die() { echo "bench: $*" >&2; exit 2; }
log() { echo "bench: $*" >&2; }

case "${1:-}" in
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
"") ;;
*) die "no arguments; settings are environment variables (see --help)" ;;
esac
[[ $BENCH_REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive number"
[[ $BENCH_HEAD_PARTS =~ ^[1-9][0-9]*$ && $BENCH_HEADS =~ ^[1-9][0-9]*$ ]] || die "BENCH_HEAD_PARTS and BENCH_HEADS must be positive numbers"
[[ $BENCH_QUIET_WAIT =~ ^[0-9]+$ ]] || die "BENCH_QUIET_WAIT must be a number of seconds"
[[ $BENCH_PROFILE =~ ^[0-9]+$ ]] || die "BENCH_PROFILE must be a number of seconds (0: no profiles)"
for s in $BENCH_SCENARIOS; do
	case $s in single | conc | series | many | small | direct | head) ;; *) die "unknown scenario $s in BENCH_SCENARIOS" ;; esac
done
for lvl in $BENCH_SERIES; do
	[[ $lvl =~ ^[1-9][0-9]*x[0-9]+[KMG]iB$ ]] || die "BENCH_SERIES: $lvl is not UPLOADSxSIZE (e.g. 64x32MiB)"
done
command -v openssl >/dev/null || die "openssl is needed for the test CA"
command -v curl >/dev/null || die "curl is needed"

# ---- processes and temp files: all removed on exit ------------------------

RUN=""
PIDS=()
cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $RUN && -d $RUN ]]; then rm -rf "$RUN"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop PID: stops one process started by start_bg and forgets it.
stop() {
	local pid=$1 keep=() p
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# start_bg LOG CMD...: starts CMD in the background with output to LOG;
# the PID is in $LAST_PID.
start_bg() {
	local logf=$1
	shift
	"$@" >"$logf" 2>&1 </dev/null &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# free_port: sets PORT to a port nothing listens on (not handed out before),
# below the kernel's range of ephemeral ports when there is room: there the
# local end of some outgoing connection could take it between this check
# and the server's bind ("address already in use").
USED_PORTS=" "
EPHEMERAL_LOW=32768
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
free_port() {
	local p lo=20000 span=40000
	if ((EPHEMERAL_LOW > 12000)); then lo=10000 span=$((EPHEMERAL_LOW - 10000)); fi
	for _ in $(seq 100); do
		p=$((lo + RANDOM % span))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if ! (: <>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			USED_PORTS+="$p "
			PORT=$p
			return
		fi
	done
	die "no free port found"
}

# wait_http NAME PID LOG CURL-ARGS...: waits until curl gets the expected
# answer (curl -f: any 2xx), at most 30 s, while the process lives.
wait_http() {
	local name=$1 pid=$2 logf=$3
	shift 3
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logf" >&2; die "$name exited during start-up"; }
		if curl -sf -o /dev/null --max-time 2 "$@"; then return 0; fi
		sleep 0.1
	done
	tail -n 30 "$logf" >&2
	die "$name did not answer within 30 s"
}

# ---- tools ----------------------------------------------------------------

runs() { [[ -x $1 ]] && "$@" >/dev/null 2>&1 </dev/null; }

place() {
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.tmp.$$"
	chmod 0755 "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}

# go_tool NAME VERSION PACKAGE CHECK-ARGS...: makes $BIN/NAME that version,
# from the machine-wide cache or built with go install (as test/tools/deps.sh).
go_tool() {
	local name=$1 version=$2 pkg=$3
	shift 3
	local dest="$BIN/$name" stamp="$BIN/.$name.version" shared="$MACHINE_BIN/$name-$version"
	if [[ $(cat "$stamp" 2>/dev/null) == "$version" ]] && runs "$dest" "$@"; then return 0; fi
	if ! runs "$shared" "$@"; then
		local tmp
		tmp=$(mktemp -d)
		log "building $pkg@$version (takes minutes once; cached in $shared)"
		if ! (cd "$tmp" && GOBIN="$tmp/bin" go install "$pkg@$version" >"$tmp/build.log" 2>&1); then
			tail -n 30 "$tmp/build.log" >&2
			rm -rf "$tmp"
			die "building $pkg@$version failed"
		fi
		runs "$tmp/bin/$name" "$@" || { rm -rf "$tmp"; die "built $name does not run"; }
		place "$tmp/bin/$name" "$shared"
		rm -rf "$tmp"
	fi
	place "$shared" "$dest"
	echo "$version" >"$stamp"
	log "installed $name $version -> $dest"
}

go_tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw --version
go_tool tusd "$TUSD_VERSION" github.com/tus/tusd/v2/cmd/tusd -version

mkdir -p "$BENCH_TMP" "$OUTDIR"
need_gib=4
[[ " $BENCH_SCENARIOS " == *" head "* ]] && need_gib=$((12 * BENCH_HEAD_PARTS / 2000 + 2))
# 8 x 1 GiB: the parts, then the assembled objects until they are deleted.
[[ " $BENCH_SCENARIOS " == *" direct "* ]] && need_gib=$((need_gib > 18 ? need_gib : 18))
free_gib=$(df -Pk "$BENCH_TMP" | awk 'NR == 2 {print int($4 / 1048576)}')
((free_gib >= need_gib)) || die "only ${free_gib} GiB free in $BENCH_TMP, need about ${need_gib} GiB (set BENCH_TMP)"
RUN=$(mktemp -d "$BENCH_TMP/tusgate-bench.XXXXXX")
mkdir -p "$RUN/bin" "$RUN/s3/root" "$RUN/s3/meta" "$RUN/home" "$RUN/tusd-tmp" "$RUN/logs"
log "temp dir $RUN"
log "building tusgate and tusgate-bench"
CGO_ENABLED=0 go build -o "$RUN/bin/tusgate" ./cmd/tusgate
CGO_ENABLED=0 go build -o "$RUN/bin/tusgate-bench" ./cmd/tusgate-bench
BENCH="$RUN/bin/tusgate-bench"

# ---- throw-away CA and server certificate for 127.0.0.1 -------------------

(
	cd "$RUN/s3"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj "/CN=tusgate bench CA" -keyout ca-key.pem -out ca.pem \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=127.0.0.1" -keyout key.pem -out server.csr
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >ext.cnf
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
		-extfile ext.cnf -out cert.pem
) >"$RUN/logs/openssl.log" 2>&1 || { cat "$RUN/logs/openssl.log" >&2; die "openssl failed"; }
CA="$RUN/s3/ca.pem"

# ---- versitygw over HTTPS (or plain HTTP) -----------------------------------

AK=bench
SK=$(openssl rand -hex 20)
free_port
S3_PORT=$PORT
S3_SCHEME=https S3_TLS=(--cert "$RUN/s3/cert.pem" --key "$RUN/s3/key.pem")
if [[ ${BENCH_S3_HTTP:-0} == 1 ]]; then S3_SCHEME=http S3_TLS=(); fi
S3_URL="$S3_SCHEME://127.0.0.1:$S3_PORT"
start_bg "$RUN/logs/versitygw.log" "${PIN_S3[@]}" env -i PATH="$PATH" HOME="$RUN/home" ROOT_ACCESS_KEY="$AK" ROOT_SECRET_KEY="$SK" \
	"$BIN/versitygw" --port "127.0.0.1:$S3_PORT" --region us-east-1 --keep-alive \
	"${S3_TLS[@]}" posix --sidecar "$RUN/s3/meta" "$RUN/s3/root"
VGW_PID=$LAST_PID
# Any answer (over verified TLS) means it is up (anonymous requests get 403).
for _ in $(seq 300); do
	kill -0 "$VGW_PID" 2>/dev/null || { tail -n 30 "$RUN/logs/versitygw.log" >&2; die "versitygw exited"; }
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CA" "$S3_URL/" || true)
	[[ $code != 000 ]] && break
	sleep 0.1
done
[[ $code != 000 ]] || die "versitygw did not answer over ${S3_SCHEME^^}"
for b in bench-tusgate bench-tusd bench-direct; do
	code=$(curl -s -o "$RUN/logs/bucket.out" -w '%{http_code}' --cacert "$CA" --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$AK:$SK" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "$S3_URL/$b")
	[[ $code == 200 ]] || { cat "$RUN/logs/bucket.out" >&2; die "creating bucket $b: HTTP $code"; }
done

S3ENV=(AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" AWS_REGION=us-east-1 AWS_CA_BUNDLE="$CA")

# ---- tusgate and stock tusd -------------------------------------------------

# start_tusgate NAME EXTRA-FLAGS...: sets TG_PID, TG_URL and TG_PPROF.
start_tusgate() {
	local name=$1 port
	shift
	free_port
	port=$PORT
	TG_URL="http://127.0.0.1:$port"
	local prof=()
	TG_METRICS="$TG_URL/metrics"
	if ((BENCH_PROFILE)); then
		free_port
		prof=(--metrics-listen "127.0.0.1:$PORT" --pprof)
		TG_PPROF="http://127.0.0.1:$PORT/debug/pprof"
		TG_METRICS="http://127.0.0.1:$PORT/metrics"
	fi
	PATHS_BEFORE=
	mkdir -p "$RUN/$name"
	start_bg "$RUN/logs/$name.log" "${PIN_REST[@]}" env -i PATH="$PATH" HOME="$RUN/home" "${S3ENV[@]}" AWS_ENDPOINT_URL_S3="$S3_URL" \
		"$RUN/bin/tusgate" --dev --listen "127.0.0.1:$port" --data-dir "$RUN/$name" --s3-bucket bench-tusgate --direct-uploads "${prof[@]}" "${TUSGATE_ARGS[@]}" "$@"
	TG_PID=$LAST_PID
	wait_http "$name" "$TG_PID" "$RUN/logs/$name.log" "$TG_URL/readyz"
}

# start_tusd NAME EXTRA-FLAGS...: sets TD_PID and TD_URL.
start_tusd() {
	local name=$1 port
	shift
	free_port
	port=$PORT
	TD_URL="http://127.0.0.1:$port"
	local prof=()
	if ((BENCH_PROFILE)); then prof=(-expose-pprof); fi
	start_bg "$RUN/logs/$name.log" "${PIN_REST[@]}" env -i PATH="$PATH" HOME="$RUN/home" TMPDIR="$RUN/tusd-tmp" "${S3ENV[@]}" \
		"$BIN/tusd" -host 127.0.0.1 -port "$port" -s3-bucket bench-tusd -s3-endpoint "$S3_URL" "${prof[@]}" "$@"
	TD_PID=$LAST_PID
	wait_http "$name" "$TD_PID" "$RUN/logs/$name.log" "$TD_URL/metrics"
}

start_tusgate tusgate
start_tusd tusd
log "versitygw pid $VGW_PID at $S3_URL; tusgate pid $TG_PID at $TG_URL; tusd pid $TD_PID at $TD_URL"

# ---- runs -------------------------------------------------------------------

LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
RESULTS="$RUN/results.jsonl"
: >"$RESULTS"
FAILED=0

# cpu_ticks: busy and total CPU ticks of the machine so far.
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# wait_quiet: waits until the machine is almost idle (under 10 % busy for a
# second) but at most BENCH_QUIET_WAIT seconds: on a shared machine, other
# programs' CPU use would be measured with ours. The report flags runs that
# were disturbed anyway.
wait_quiet() {
	local deadline=$((SECONDS + BENCH_QUIET_WAIT)) b0 t0 b1 t1 busy
	while :; do
		read -r b0 t0 < <(cpu_ticks)
		sleep 1
		read -r b1 t1 < <(cpu_ticks)
		busy=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
		((busy < 10)) && return 0
		if ((SECONDS >= deadline)); then
			log "the machine is still ${busy} % busy after waiting ${BENCH_QUIET_WAIT} s; measuring anyway"
			return 0
		fi
	done
}

# bench SCENARIO TARGET ARGS...: one run, its JSON appended to $RESULTS (or
# to $OUT if set).
bench() {
	local scenario=$1 target=$2 rc=0
	shift 2
	local args=(--scenario "$scenario" --label "$target" --s3-pid "$VGW_PID" --timeout "$BENCH_TIMEOUT" --json)
	local pprof=""
	case $target in
	tusgate)
		args+=(--endpoint "$TG_URL/files/" --token-url "$TG_URL/dev/oidc/token" --pid "$TG_PID") pprof=${TG_PPROF:-}
		if [[ -n ${BENCH_CHECKSUM:-} ]]; then args+=(--checksum "$BENCH_CHECKSUM"); fi
		;;
	tusgate-direct)
		args+=(--gate-direct --endpoint "$TG_URL/" --token-url "$TG_URL/dev/oidc/token" --pid "$TG_PID" --s3-bucket bench-tusgate) pprof=${TG_PPROF:-}
		;;
	tusd) args+=(--endpoint "$TD_URL/files/" --pid "$TD_PID") pprof=$TD_URL/debug/pprof ;;
	s3-direct) args+=(--s3-direct --s3-bucket bench-direct) ;;
	esac
	# Let the previous run's writes reach the disk, so they do not slow this one.
	sync
	wait_quiet
	local prof_pid=""
	if ((BENCH_PROFILE)) && [[ -n $pprof && -z ${OUT:-} ]]; then
		PROFILE_N=$((${PROFILE_N:-0} + 1))
		local pf
		pf="$RUN/profile-$PROFILE_N-$target-${scenario//[^A-Za-z0-9]/_}.pprof"
		curl -sf -o "$pf" "$pprof/profile?seconds=$BENCH_PROFILE" &
		prof_pid=$!
	fi
	"${PIN_REST[@]}" env "${S3ENV[@]}" AWS_ENDPOINT_URL_S3="$S3_URL" "$BENCH" "${args[@]}" "$@" >>"${OUT:-$RESULTS}" || rc=$?
	if [[ -n $prof_pid ]]; then wait "$prof_pid" || log "taking a profile of $target failed"; fi
	case $rc in
	0) ;;
	1) FAILED=1 ;;
	130 | 143) exit "$rc" ;; # interrupted
	*) die "tusgate-bench failed (exit $rc) for $target in $scenario" ;;
	esac
}

# interleave SCENARIO "TARGETS" ARGS...: BENCH_REPEAT rounds; each round runs
# every target once, starting one target later than the round before.
interleave() {
	local scenario=$1 targets
	read -r -a targets <<<"$2"
	shift 2
	local n=${#targets[@]} r i
	for ((r = 0; r < BENCH_REPEAT; r++)); do
		for ((i = 0; i < n; i++)); do
			bench "$scenario" "${targets[(i + r) % n]}" "$@"
		done
	done
}

# warm_up: one small untimed run per target after the servers (re)start
# (first connections and TLS sessions, heap growth), so that the first target
# of the first round does not pay for it alone.
warm_up() {
	local t
	for t in $ALL; do
		OUT="$RUN/warm-up.jsonl" bench warm-up "$t" --uploads 8 --size 16MiB --concurrency 4
	done
}

# write_paths SCENARIO: records how tusgate's PATCHes of the scenario
# reached S3 (tusgate_s3_writes_total by path, since the last call): from
# part buffers (stream, buffer) or through windows (window); tempfile is
# tusd's temp-file path, which tusgate no longer takes.
PATHS_BEFORE=""
write_paths() {
	local now line="" p v b
	now=$(curl -sf --max-time 5 "$TG_METRICS" | awk -F'[{}" ]+' '/^tusgate_s3_writes_total/ {print $3 "=" $NF}' | sort) || return 0
	for p in stream buffer window tempfile; do
		v=$(sed -n "s/^$p=//p" <<<"$now")
		b=$(sed -n "s/^$p=//p" <<<"$PATHS_BEFORE")
		line+=" $p=$((${v:-0} - ${b:-0}))"
	done
	PATHS_BEFORE=$now
	echo "$1 (all runs and the warm-up):$line" >>"$RUN/paths.txt"
	log "tusgate write paths in $1:$line"
}

ALL="tusgate tusd s3-direct"
read -r -a SCENARIOS <<<"$BENCH_SCENARIOS"
warm_up
for ((si = 0; si < ${#SCENARIOS[@]}; si++)); do
	s=${SCENARIOS[si]}
	case $s in
	single) interleave "1x$BENCH_SIZE" "$ALL" --uploads 1 --size "$BENCH_SIZE" --concurrency 1 ;;&
	conc) interleave "${BENCH_CONC}x$BENCH_CONC_SIZE c$BENCH_CONC" "$ALL" \
		--uploads "$BENCH_CONC" --size "$BENCH_CONC_SIZE" --concurrency "$BENCH_CONC" ;;&
	many) interleave "${BENCH_MANY}x1MiB c$BENCH_MANY" "$ALL" --uploads "$BENCH_MANY" --size 1MiB --concurrency "$BENCH_MANY" ;;&
	small) interleave "${BENCH_SMALL_N}x64KiB creation-with-upload c$BENCH_SMALL_CONC" "$ALL" \
		--uploads "$BENCH_SMALL_N" --size 64KiB --concurrency "$BENCH_SMALL_CONC" --creation-with-upload ;;&
	direct) interleave "${BENCH_DIRECT}x$BENCH_DIRECT_SIZE c$BENCH_DIRECT" "tusgate tusgate-direct s3-direct" \
		--uploads "$BENCH_DIRECT" --size "$BENCH_DIRECT_SIZE" --concurrency "$BENCH_DIRECT" --part-size "$BENCH_DIRECT_PART" --part-concurrency 2 ;;&
	single | conc | many | small) write_paths "$s" ;;
	series)
		for lvl in $BENCH_SERIES; do
			interleave "${lvl} c${lvl%%x*}" "tusgate tusd" --uploads "${lvl%%x*}" --size "${lvl#*x}" --concurrency "${lvl%%x*}"
			write_paths "series $lvl"
		done
		;;
	head)
		# Both servers again with 5 MiB parts, so that one PATCH makes
		# BENCH_HEAD_PARTS parts; the default servers are stopped meanwhile
		# and started again afterwards if scenarios follow.
		stop "$TG_PID"
		stop "$TD_PID"
		start_tusgate tusgate-5mib --s3-part-size 5MiB
		start_tusd tusd-5mib -s3-part-size 5242880
		BENCH_REPEAT=1 interleave "HEAD, $BENCH_HEAD_PARTS parts of 5MiB" "tusgate tusd" \
			--head-parts "$BENCH_HEAD_PARTS" --head-part-size 5MiB --heads "$BENCH_HEADS" --concurrency 1
		stop "$TG_PID"
		stop "$TD_PID"
		if ((si + 1 < ${#SCENARIOS[@]})); then
			start_tusgate tusgate
			start_tusd tusd
			warm_up
		fi
		;;
	esac
done

# ---- report -----------------------------------------------------------------

mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then rev+=" (with uncommitted changes)"; fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$OUTDIR/bench-$stamp.md"
{
	echo "Machine: $(nproc) cores ($cpu), $mem memory, $(go env GOVERSION), Linux $(uname -r)."
	echo "Load average before the runs: $LOAD_BEFORE (other programs on the machine disturb the numbers; see the other CPU column)."
	echo "tusgate $rev, tusd $TUSD_VERSION, versitygw $VERSITYGW_VERSION (posix, ${S3_SCHEME^^} on 127.0.0.1), $stamp."
	echo
	echo "Command: \`${REPRO}bash scripts/bench.sh\`"
	echo
	"$BENCH" report --subject tusgate "$RESULTS"
	if [[ -s $RUN/paths.txt ]]; then
		echo
		echo "How tusgate's PATCHes reached S3 (tusgate_s3_writes_total: stream and buffer use part buffers, window a 128 KiB window, tempfile the temp dir):"
		echo
		sed 's/^/- /' "$RUN/paths.txt"
	fi
} >"$REPORT"
cp "$RESULTS" "$OUTDIR/bench-$stamp.jsonl"
for pf in "$RUN"/profile-*.pprof; do
	[[ -e $pf ]] && cp "$pf" "$OUTDIR/bench-$stamp-${pf##*/}"
done
echo
cat "$REPORT"
echo
log "report in $REPORT, raw results in $OUTDIR/bench-$stamp.jsonl"
if ((FAILED)); then
	log "some uploads failed (see the failed uploads column)"
	exit 1
fi
