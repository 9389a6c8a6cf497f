#!/bin/sh
# Reproducible builds (issue #12, label repro): builds one musl preset of
# one commit twice, from two clones at different absolute paths (of
# different lengths), and compares byte for byte the stripped binaries,
# libzmq.a/libcmocka-static.a, and what scripts/package makes of them
# (tarball, .deb, SHA256SUMS). Only the commit is built: uncommitted
# changes of the checkout are not part of the test.
#
#   tests/repro/repro_test.sh [CHECKOUT]      default: this script's checkout
#
# Environment:
#   BP_REPRO_COMMIT=HEAD      the commit to build (any git revision)
#   BP_REPRO_PRESET=x86_64-musl
#   BP_REPRO_JOBS=2           cmake --build -j (the builds run one at a time,
#                             under nice)
#   BP_REPRO_TMP=$TMPDIR      where the two clones go (about 2 x 110 MB;
#                             default /tmp); removed on exit, also on failure
#   BP_REPRO_KEEP=1           keep them, to look at a difference
#   BP_DEPS_CACHE             the first build takes libzmq/cmocka from the
#                             machine's dependency cache when it has them
#                             (cmake/BpThirdParty.cmake), like any build; the
#                             second always builds its own (-DBP_DEPS_CACHE=)
#                             at its own path, so they are compared too
#   BP_ZIG, BP_ZIG_CACHE, BP_SOURCE_CACHE, SOURCE_DATE_EPOCH: as for any
#                             build; zig defaults to the checkout's .venv
#                             (scripts/bootstrap), shared by both builds.
# Exit 0: identical; 1: a difference (each differing file is named, with
# hints), a failed build or an unknown BP_REPRO_COMMIT; 77: cannot run
# here (no git checkout, no zig, no cmake/ninja/git).
# Measured on this project's 2-core machine, shared with other builds:
# see toolchains/README.md ("Reproducible builds").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(cd "$here/../.." && pwd)}
preset=${BP_REPRO_PRESET:-x86_64-musl}
commit=${BP_REPRO_COMMIT:-HEAD}
jobs=${BP_REPRO_JOBS:-2}

t0=$(date +%s)
say() { printf 'repro [%4ss]: %s\n' "$(($(date +%s) - t0))" "$*"; }
skip() { say "SKIP: $*"; exit 77; }

for tool in git cmake ninja cpack tar gzip ar cmp; do
    command -v "$tool" >/dev/null 2>&1 || skip "no $tool on PATH"
done
git -C "$root" rev-parse --git-dir >/dev/null 2>&1 ||
    skip "$root is not a git checkout (the test builds a commit)"
sha=$(git -C "$root" rev-parse --verify --quiet "$commit^{commit}") || {
    say "FAIL: no commit $commit in $root (BP_REPRO_COMMIT)"
    exit 1
}
zig=${BP_ZIG:-$root/.venv/bin/zig}
[ -x "$zig" ] || skip "no zig at $zig (run scripts/bootstrap or set BP_ZIG)"
BP_ZIG=$zig
export BP_ZIG

tmp=$(mktemp -d "${BP_REPRO_TMP:-${TMPDIR:-/tmp}}/bp-repro.XXXXXX")
cleanup() {
    if [ -n "${BP_REPRO_KEEP:-}" ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two source paths of different lengths.
a=$tmp/a/src
b=$tmp/b-second-build/boardpipe-src
say "commit $(git -C "$root" log -1 --format='%h %s' "$sha" | cut -c1-70)"
say "preset $preset; builds in $a and $b"

# build DIR LOG [CMAKE-ARG...]: clone the commit into DIR, configure,
# build, package.
build() {
    dir=$1
    log=$2
    shift 2
    mkdir -p "$(dirname "$dir")"
    # --shared: the clone borrows the checkout's objects (nothing is
    # written to the checkout); --no-checkout + detach: exactly $sha.
    git clone -q --shared --no-checkout "$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)" "$dir" &&
        git -C "$dir" -c advice.detachedHead=false checkout -q --detach "$sha" || return 1
    tb=$(date +%s)
    (
        cd "$dir"
        nice cmake --preset "$preset" -DBUILD_TESTING=OFF "$@" &&
            nice cmake --build --preset "$preset" -j "$jobs" &&
            nice scripts/package -o "$dir/dist" "$preset"
    ) >"$log" 2>&1 || {
        tail -n 40 "$log"
        say "FAIL: build in $dir failed (log above: $log)"
        return 1
    }
    say "built and packaged in $dir in $(($(date +%s) - tb))s"
}

build "$a" "$tmp/a.log" || exit 1
build "$b" "$tmp/b.log" -DBP_DEPS_CACHE= || exit 1
grep -h 'boardpipe: libzmq and cmocka' "$tmp/a.log" "$tmp/b.log" | sed 's/^-- /    /' || true

# Hints for a differing file.
explain() {
    fa=$1
    fb=$2
    printf '    sizes %s / %s; first differing bytes (cmp -l | head: offset, octal a, octal b):\n' \
        "$(wc -c <"$fa")" "$(wc -c <"$fb")"
    cmp -l "$fa" "$fb" 2>/dev/null | head -n 8 | sed 's/^/      /'
    case $fa in
    *.tar.gz)
        printf '    tar -tvzf: differing members:\n'
        tar -tvzf "$fa" >"$tmp/la" 2>&1 || true
        tar -tvzf "$fb" >"$tmp/lb" 2>&1 || true
        diff "$tmp/la" "$tmp/lb" | head -n 20 | sed 's/^/      /' || true
        ;;
    *.deb)
        printf '    ar tv / dpkg-deb -c: differing members:\n'
        { ar tv "$fa"; dpkg-deb -c "$fa"; } >"$tmp/la" 2>&1 || true
        { ar tv "$fb"; dpkg-deb -c "$fb"; } >"$tmp/lb" 2>&1 || true
        diff "$tmp/la" "$tmp/lb" | head -n 20 | sed 's/^/      /' || true
        ;;
    *.a)
        printf '    differing archive members (ar t):\n'
        mkdir -p "$tmp/xa" "$tmp/xb"
        (cd "$tmp/xa" && ar x "$fa") && (cd "$tmp/xb" && ar x "$fb") &&
            for m in $(ar t "$fa" | sort -u); do
                cmp -s "$tmp/xa/$m" "$tmp/xb/$m" || printf '      %s\n' "$m"
            done | head -n 10
        rm -rf "$tmp/xa" "$tmp/xb"
        ;;
    *SHA256SUMS) diff "$fa" "$fb" | sed 's/^/      /' || true ;;
    *)
        printf '    strings found in only one of them (checkout paths?):\n'
        strings -n 6 "$fa" | sort -u >"$tmp/sa"
        strings -n 6 "$fb" | sort -u >"$tmp/sb"
        comm -3 "$tmp/sa" "$tmp/sb" | head -n 10 | sed 's/^/      /'
        ;;
    esac
    command -v diffoscope >/dev/null 2>&1 &&
        printf '    more: diffoscope %s %s\n' "$fa" "$fb"
    return 0
}

bd=build/$preset
set -- "$bd/bin/ventilator" "$bd/bin/worker" "$bd/bin/sink" \
    deps/libzmq.a deps/libcmocka-static.a
# Where each build's libzmq/cmocka are (the build's own, or a dependency
# cache entry): linked under one name per build for the comparison.
for d in "$a" "$b"; do
    p=$(cat "$d/$bd/deps-prefix.txt" 2>/dev/null) || { say "FAIL: no $bd/deps-prefix.txt in $d"; exit 1; }
    mkdir -p "$d/deps"
    for l in libzmq.a libcmocka-static.a; do ln -sf "$p/lib/$l" "$d/deps/$l"; done
done
tgz=
for f in "$a"/dist/*; do
    [ -f "$f" ] || continue
    set -- "$@" "dist/${f##*/}"
    case $f in *.tar.gz) tgz=$f ;; esac
done
[ -f "$a/dist/SHA256SUMS" ] || { say "FAIL: no dist/SHA256SUMS"; exit 1; }
[ -n "$tgz" ] || { say "FAIL: no tarball in dist/"; exit 1; }
listing() { (cd "$1" && for f in *; do printf '%s ' "$f"; done); }
# The packages' generated and added files are among what is compared (in
# the tarball and the .deb): the manual pages (help2man), changelog.gz,
# copyright, the notices and the units.
missing=
members=$(tar -tzf "$tgz")
for m in usr/share/man/man1/boardpipe-worker.1.gz usr/share/doc/boardpipe/changelog.gz \
    usr/share/doc/boardpipe/copyright usr/share/doc/boardpipe/notices/libzmq LICENSE \
    lib/systemd/system/boardpipe-sink.service usr/share/bash-completion/completions/boardpipe-worker; do
    printf '%s\n' "$members" | grep -q "/$m\$" || missing="$missing $m"
done
[ -z "$missing" ] || { say "FAIL: the tarball lacks:$missing"; exit 1; }

differ=0
same=0
for f in "$@"; do
    if [ ! -f "$a/$f" ] || [ ! -f "$b/$f" ]; then
        say "DIFFERS: $f exists in only one build"
        differ=$((differ + 1))
    elif cmp -s "$a/$f" "$b/$f"; then
        same=$((same + 1))
    else
        say "DIFFERS: $f"
        explain "$a/$f" "$b/$f"
        differ=$((differ + 1))
    fi
done
if [ "$(listing "$a/dist")" != "$(listing "$b/dist")" ]; then
    say "DIFFERS: dist/ holds other files: $(listing "$a/dist")/ $(listing "$b/dist")"
    differ=$((differ + 1))
fi

if [ "$differ" -ne 0 ]; then
    say "FAIL: $differ file(s) differ between the two builds ($same identical); BP_REPRO_KEEP=1 keeps them"
    exit 1
fi
say "PASS: $same files identical: $(printf '%s ' "$@" | sed "s|build/$preset/||g")"
