#!/usr/bin/env bash
# Installs the tools the test suite needs; idempotent and quiet when nothing
# is missing (it then prints only the final "deps: ..." summary line).
#
#   <repo>/.cache/bin/versitygw    S3 server for integration tests
#   <repo>/.cache/bin/staticcheck  linter
#   <repo>/.cache/bin/minio        second S3 server, only with TUSGATE_TEST_S3=minio
#   redis-server, /usr/bin/chromium  Debian packages (apt), only when missing
#
# Go tools are built once per machine and kept in
# ${XDG_CACHE_HOME:-$HOME/.cache}/tusgate/bin/<name>-<version>, because a cold
# build of versitygw takes about 8 minutes; a fresh clone copies them from there.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
STATICCHECK_VERSION=v0.8.2 # newest release; builds and runs with Go 1.26
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c # the module proxy's latest (MinIO tags no semver)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN="$ROOT/.cache/bin"
MACHINE_BIN="${XDG_CACHE_HOME:-${HOME:-$(cd ~ && pwd)}/.cache}/tusgate/bin"

# .gitignore at the repo root: add whichever of our lines are missing.
gi="$ROOT/.gitignore"
for line in /.cache/ /data/ /bin/; do
	if ! [[ -f $gi ]] || ! grep -qxF -- "$line" "$gi"; then
		if [[ -s $gi && $(tail -c 1 "$gi") != "" ]]; then echo >>"$gi"; fi
		echo "$line" >>"$gi"
	fi
done

TMPDIRS=()
cleanup() { if ((${#TMPDIRS[@]})); then rm -rf "${TMPDIRS[@]}"; fi; }
trap cleanup EXIT

die() { echo "deps: $*" >&2; exit 1; }

# runs NAME ARGS...: true if the binary executes its cheap self-check.
runs() { [[ -x $1 ]] && "$@" >/dev/null 2>&1 </dev/null; }

# place SRC DST: copy atomically (concurrent runs never see a partial file).
place() {
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.tmp.$$"
	chmod 0755 "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}

# go_tool NAME VERSION PACKAGE CHECK-ARGS...: makes $BIN/NAME the given version.
go_tool() {
	local name=$1 version=$2 pkg=$3
	shift 3
	local dest="$BIN/$name" stamp="$BIN/.$name.version"
	local shared="$MACHINE_BIN/$name-$version"
	if [[ $(cat "$stamp" 2>/dev/null) == "$version" ]] && runs "$dest" "$@"; then
		return 0
	fi
	if runs "$shared" "$@"; then
		place "$shared" "$dest"
		echo "$version" >"$stamp"
		echo "deps: installed $name $version -> $dest (from $shared)"
		return 0
	fi
	command -v go >/dev/null || die "go is not installed (needed to build $name)"
	local tmp start
	tmp=$(mktemp -d)
	TMPDIRS+=("$tmp")
	start=$SECONDS
	if ! (cd "$tmp" && GOBIN="$tmp/bin" go install "$pkg@$version" >"$tmp/build.log" 2>&1); then
		tail -n 30 "$tmp/build.log" >&2
		die "building $pkg@$version failed"
	fi
	runs "$tmp/bin/$name" "$@" || die "built $name $version does not run"
	place "$tmp/bin/$name" "$shared"
	place "$tmp/bin/$name" "$dest"
	echo "$version" >"$stamp"
	echo "deps: installed $name $version -> $dest (built in $((SECONDS - start))s, cached in $shared)"
}

go_tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw --version
go_tool staticcheck "$STATICCHECK_VERSION" honnef.co/go/tools/cmd/staticcheck -version
# MinIO, the second S3 target (TUSGATE_TEST_S3=minio, scripts/test-minio.sh):
# built only when asked for, a cold build takes over 8 minutes.
if [[ ${TUSGATE_TEST_S3:-} == minio ]]; then
	go_tool minio "$MINIO_VERSION" github.com/minio/minio --version
fi

# Debian packages, installed only when their command is missing.
find_redis() { command -v redis-server 2>/dev/null || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; } || true; }
CHROMIUM=/usr/bin/chromium
pkgs=()
[[ -n $(find_redis) ]] || pkgs+=(redis-server)
[[ -x $CHROMIUM ]] || pkgs+=(chromium)
if ((${#pkgs[@]})); then
	sudo=()
	if [[ $(id -u) != 0 ]]; then
		if command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
			sudo=(sudo)
		else
			die "missing Debian package(s): ${pkgs[*]}; install them as root: apt-get install ${pkgs[*]}"
		fi
	fi
	log="$ROOT/.cache/apt.log"
	mkdir -p "$ROOT/.cache"
	if ! { "${sudo[@]}" apt-get update -q &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		die "apt-get install ${pkgs[*]} failed (full log: $log)"
	fi
	for p in "${pkgs[@]}"; do echo "deps: installed Debian package $p"; done
fi
REDIS=$(find_redis)
[[ -n $REDIS ]] || die "redis-server still missing after installing package redis-server"
[[ -x $CHROMIUM ]] || die "$CHROMIUM still missing after installing package chromium"

# npm packages of the browser tests (playwright-core drives the Debian
# chromium; it downloads no browser). Installed again only when the lockfile
# changed.
npm_ci() {
	local dir=$ROOT/$1 stamp=$ROOT/$1/node_modules/.lock-stamp
	[[ -f $dir/package-lock.json ]] || die "$1/package-lock.json is missing"
	if [[ ! -f $stamp ]] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
		command -v npm >/dev/null || die "npm is missing; install Node.js (with npm)"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in $1 failed"
		cp "$dir/package-lock.json" "$stamp"
		echo "deps: installed npm packages in $1"
	fi
}
npm_ci test/e2e

echo "deps: versitygw $BIN/versitygw, staticcheck $BIN/staticcheck, redis-server $REDIS, chromium $CHROMIUM"
