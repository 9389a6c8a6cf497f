#!/usr/bin/env bash
# The packages as a Debian maintainer would check them (issue #23), for
# every built musl preset (scripts/package), or for the artifacts in DIR:
#   - lintian -I --pedantic on each .deb: nothing but overrides (each
#     override in cmake/package/lintian-overrides has a comment saying why);
#   - control fields: Architecture from the binaries' ELF machine (amd64,
#     arm64; armhf = ARMv6 hard-float code, what Raspberry Pi OS 32-bit's
#     `dpkg --print-architecture` says), no Depends (static binaries),
#     Version = the changelog's = CMakeLists.txt's, a Description naming
#     Raspberry Pi OS for arm64/armhf; dpkg unpacks it into a root whose
#     dpkg has that architecture;
#   - every tarball and .deb: LICENSE (tarball), copyright (DEP-5), every
#     file of third_party/notices/ byte for byte, the libzmq patches,
#     changelog.gz, the units (LimitNOFILE=65536), conffiles;
#   - manual pages: man -l renders each without a warning, and it lists the
#     same options as the packaged binary's --help (run under qemu for ARM),
#     with an ENVIRONMENT entry BP_<NAME> for each; the same for bpfleet.1
#     (build/x86_64-musl/man) against board/bpfleet --help;
#   - bash completion: options, option values and bpfleet's board names.
#
#   tests/package/package_test.sh [--dist DIR] [REPO_ROOT]
#
# Exits 77 (skip) with the reason when no musl preset is built or lintian,
# man or dpkg-deb is missing; 1 when a check failed.
set -uo pipefail
dist=
given_dist=0
if [ "${1:-}" = --dist ]; then
    given_dist=1
    dist=$2
    shift 2
fi
# ok, bad, check, skip: the fleet suite's (tests/fleet/fleet_lib.sh).
# shellcheck source-path=SCRIPTDIR source=../fleet/fleet_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../fleet/fleet_lib.sh"
fleet_init package "bpp$$" 600 "${1:-}"
for c in lintian man dpkg-deb dpkg readelf file gzip bash; do
    command -v "$c" >/dev/null || skip "no '$c' on this machine (scripts/bootstrap installs it)"
done
TMP=$(mktemp -d /tmp/bppkg.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# ------------------------------------------------------------- the packages
if [ -z "$dist" ]; then
    dist=$TMP/dist
    built=
    for p in $("$ROOT/scripts/package" --list-presets); do
        [ -f "$ROOT/build/$p/CPackConfig.cmake" ] && built="$built $p"
    done
    [ -n "$built" ] || skip "no musl preset is built (cmake --preset x86_64-musl && cmake --build --preset x86_64-musl)"
    # shellcheck disable=SC2086
    "$ROOT/scripts/package" -o "$dist" $built >"$TMP/package.log" 2>&1 || {
        cat "$TMP/package.log"
        bad "scripts/package$built"
        exit 1
    }
fi
version=$(sed -n 's/^project(boardpipe VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
clversion=$(sed -n '1s/^boardpipe (\([^)]*\)).*/\1/p' "$ROOT/cmake/package/changelog")
check "changelog's newest entry is the project's version ($clversion = $version)" [ "$clversion" = "$version" ]
notices=()
for f in "$ROOT"/third_party/notices/*; do
    [ "${f##*/}" = README ] || notices+=("${f##*/}")
done

# debian/copyright (cmake/package/copyright) names every component that
# has a notice: a notice added to third_party/notices/ needs its Files:
# paragraph there too.
miss=
for n in "${notices[@]}"; do
    grep -q "/usr/share/doc/boardpipe/notices/$n\.\?\$" "$ROOT/cmake/package/copyright" || miss="$miss $n"
done
check "cmake/package/copyright has a paragraph for every notice${miss:+ (none for:$miss: add a Files: paragraph)}" [ -z "$miss" ]

# Comments: every override line has a comment block above it.
# shellcheck disable=SC2016 # awk's own $0
check "every lintian override says why (a comment block right above it)" awk '
    /^#/ { c = 1; next } /^[[:space:]]*$/ { c = 0; next }
    { if (!c) { print "no reason: " $0; bad = 1 } }
    END { exit bad }' "$ROOT/cmake/package/lintian-overrides"

# tree_checks DIR WHAT: the files every artifact carries (DIR = its root).
tree_checks() {
    local d=$1 what=$2 n f u miss=
    for n in "${notices[@]}"; do
        cmp -s "$ROOT/third_party/notices/$n" "$d/usr/share/doc/boardpipe/notices/$n" || miss="$miss notices/$n"
    done
    for f in "$ROOT"/third_party/patches/*.patch; do
        cmp -s "$f" "$d/usr/share/doc/boardpipe/patches/${f##*/}" || miss="$miss patches/${f##*/}"
    done
    cmp -s "$ROOT/cmake/package/copyright" "$d/usr/share/doc/boardpipe/copyright" || miss="$miss copyright"
    zcmp -s "$d/usr/share/doc/boardpipe/changelog.gz" "$ROOT/cmake/package/changelog" 2>/dev/null || miss="$miss changelog.gz"
    for f in ventilator worker sink; do
        [ -s "$d/usr/share/man/man1/boardpipe-$f.1.gz" ] || miss="$miss man/boardpipe-$f.1.gz"
        [ -s "$d/usr/share/bash-completion/completions/boardpipe-$f" ] || miss="$miss completions/boardpipe-$f"
        [ -f "$d/etc/default/boardpipe-$f" ] || miss="$miss etc/default/boardpipe-$f"
    done
    for u in boardpipe-worker.service boardpipe-sink.service boardpipe-ventilator@.service; do
        grep -qx 'LimitNOFILE=65536' "$d/lib/systemd/system/$u" 2>/dev/null || miss="$miss $u(LimitNOFILE=65536)"
    done
    check "$what: notices (${notices[*]}), patches, copyright, changelog, man pages, completions, units${miss:+; missing or different:$miss}" [ -z "$miss" ]
}

# ------------------------------------------------------------- tarballs
ntgz=0
for tgz in "$dist"/boardpipe-*.tar.gz; do
    [ -f "$tgz" ] || continue
    ntgz=$((ntgz + 1))
    n=$(basename "$tgz" .tar.gz)
    mkdir -p "$TMP/t/$n"
    tar -C "$TMP/t/$n" -xzf "$tgz"
    d=$TMP/t/$n/$n
    check "$n.tar.gz: LICENSE and README at its top" cmp -s "$ROOT/LICENSE" "$d/LICENSE"
    tree_checks "$d" "$n.tar.gz"
done
[ "$ntgz" -gt 0 ] || skip "no tarball in $dist"

# ------------------------------------------------------------- .debs
# arch_of ELF: the Debian architecture its code is for.
arch_of() {
    case $(file -b "$1") in
    *x86-64*) echo amd64 ;;
    *"ARM aarch64"*) echo arm64 ;;
    *"ARM, EABI5"*)
        # armhf: hard-float calls; ARMv6 (Tag_CPU_arch v6*) runs on every Pi.
        if readelf -A "$1" | grep -q 'Tag_ABI_VFP_args: VFP registers'; then echo armhf; else echo armel; fi ;;
    *) echo unknown ;;
    esac
}
# dpkg_unpack ROOT DEB: dpkg --unpack into ROOT (its log: $TMP/dpkg.log).
dpkg_unpack() {
    dpkg --root="$1" --force-script-chrootless --no-triggers --unpack "$2" >"$TMP/dpkg.log" 2>&1
}
dpkg_refuses() { ! dpkg_unpack "$@"; }
ndeb=0
for deb in "$dist"/boardpipe_*.deb; do
    [ -f "$deb" ] || continue
    ndeb=$((ndeb + 1))
    b=$(basename "$deb")
    x=$TMP/x/$b
    mkdir -p "$x"
    dpkg-deb -x "$deb" "$x"
    arch=$(dpkg-deb -f "$deb" Architecture)
    elf=$(arch_of "$x/usr/bin/boardpipe-worker")
    check "$b: Architecture $arch, its binaries' code is $elf" [ "$arch" = "$elf" ]
    if [ "$arch" = armhf ]; then
        tag=$(readelf -A "$x/usr/bin/boardpipe-worker" | sed -n 's/^ *Tag_CPU_arch: *//p')
        check "$b: ARMv6 code (Tag_CPU_arch $tag), so every Pi runs it" [ "${tag#v6}" != "$tag" ]
    fi
    check "$b: Version $(dpkg-deb -f "$deb" Version) (the changelog's)" [ "$(dpkg-deb -f "$deb" Version)" = "$clversion" ]
    check "$b: no Depends/Pre-Depends (static binaries)" \
        [ -z "$(dpkg-deb -f "$deb" Depends Pre-Depends)" ]
    desc=$(dpkg-deb -f "$deb" Description)
    case $arch in
    arm64 | armhf) check "$b: the Description names Raspberry Pi OS" grep -q 'Raspberry Pi OS' <<<"$desc" ;;
    esac
    check "$b: conffiles are the three /etc/default files" \
        [ "$(dpkg-deb -I "$deb" conffiles | sort | tr '\n' ' ')" = "/etc/default/boardpipe-sink /etc/default/boardpipe-ventilator /etc/default/boardpipe-worker " ]
    # dpkg of a system with this architecture unpacks it (no dependency,
    # no conflict); nothing is configured (no scripts run here). A foreign
    # architecture is refused until dpkg is told about it: the field is what
    # dpkg matches.
    r=$TMP/root-$arch
    mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates"
    : >"$r/var/lib/dpkg/status"
    if [ "$arch" != "$(dpkg --print-architecture)" ]; then
        check "$b: dpkg of an $(dpkg --print-architecture) system refuses it" dpkg_refuses "$r" "$deb"
        dpkg --root="$r" --add-architecture "$arch"
    fi
    check "$b: dpkg unpacks it on a system with architecture $arch" dpkg_unpack "$r" "$deb"
    tree_checks "$x" "$b"
    check "$b: lintian overrides installed" [ -f "$x/usr/share/lintian/overrides/boardpipe" ]
    out=$(lintian -I --pedantic --tag-display-limit 0 "$deb" 2>&1 | grep -v 'running with root privileges')
    check "$b: lintian -I --pedantic: nothing but overrides${out:+:$'\n'$out}" \
        [ -z "$(grep -E '^[EWIPX]: ' <<<"$out")" ]
    [ "$arch" = amd64 ] && AMD64=$x
done
[ "$ndeb" -gt 0 ] || skip "no .deb in $dist"

# ------------------------------------------------------------- man pages
# help_opts: the long options an option list on stdin gives (lines that
# start with spaces and a dash), one a line, sorted.
help_opts() {
    grep -E '^ {1,8}-' | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u
}
# man_check PAGE NAME HELP-FILE: renders PAGE, compares its options with
# HELP-FILE's, and (for the boardpipe tools) its ENVIRONMENT.
man_check() {
    local page=$1 name=$2 help=$3 text warn o miss='' s
    warn=$(MANWIDTH=100 LC_ALL=C.UTF-8 man --warnings -l "$page" 2>&1 >/dev/null)
    text=$(MANWIDTH=100 LC_ALL=C.UTF-8 man -l "$page" 2>/dev/null | col -b)
    check "$name(1): man -l renders it, no warning${warn:+: $warn}" [ -n "$text" -a -z "$warn" ]
    for s in NAME SYNOPSIS DESCRIPTION "EXIT STATUS" FILES EXAMPLES ENVIRONMENT; do
        grep -qx "$s" <<<"$text" || miss="$miss $s"
    done
    check "$name(1): sections NAME SYNOPSIS DESCRIPTION ENVIRONMENT EXIT STATUS FILES EXAMPLES${miss:+ (missing:$miss)}" [ -z "$miss" ]
    local a b
    a=$(help_opts <"$help")
    b=$(sed -n '/^DESCRIPTION$/,/^[A-Z][A-Z ]*$/p' <<<"$text" | sed -n '/^DESCRIPTION$/,$p' | help_opts)
    check "$name(1): the same $(wc -l <<<"$a") options as --help${a:+}$(diff <(echo "$a") <(echo "$b") | grep '^[<>]' | tr '\n' ' ' | sed 's/^./ (diff: &/; s/ $/)/')" [ "$a" = "$b" ]
    if [ "${name#boardpipe-}" != "$name" ]; then
        miss=
        while read -r o; do
            o=${o#--}
            grep -qx "       BP_$(tr 'a-z-' 'A-Z_' <<<"$o")" <<<"$text" ||
                grep -q "^       BP_$(tr 'a-z-' 'A-Z_' <<<"$o") " <<<"$text" || miss="$miss BP_$o"
        done < <(grep -vx -e --help -e --version -e --keygen <<<"$a")
        check "$name(1): ENVIRONMENT has BP_<NAME> for every option${miss:+ (missing:$miss)}" [ -z "$miss" ]
    fi
}
emu_for() {
    case $1 in
    arm64) echo "qemu-aarch64-static -cpu cortex-a53" ;;
    armhf) echo "qemu-arm-static -cpu arm1176" ;;
    esac
}
for x in "$TMP"/x/*.deb; do
    arch=$(dpkg-deb -f "$dist/${x##*/}" Architecture)
    emu=$(emu_for "$arch")
    if [ -n "$emu" ] && ! command -v "${emu%% *}" >/dev/null; then
        bad "${x##*/}: no ${emu%% *} to run its --help"
        continue
    fi
    for t in ventilator worker sink; do
        # shellcheck disable=SC2086 # the emulator and its options
        $emu "$x/usr/bin/boardpipe-$t" --help >"$TMP/help" 2>&1 || bad "${x##*/}: boardpipe-$t --help failed"
        man_check "$x/usr/share/man/man1/boardpipe-$t.1.gz" "boardpipe-$t [$arch]" "$TMP/help"
    done
done
fp=$ROOT/build/x86_64-musl/man/bpfleet.1
if [ -f "$fp" ]; then
    bash "$ROOT/board/bpfleet" --help >"$TMP/help" 2>&1
    man_check "$fp" bpfleet "$TMP/help"
elif [ "$given_dist" = 1 ]; then
    printf 'note: no %s: bpfleet(1) not checked\n' "$fp"
else
    bad "no $fp (build x86_64-musl with help2man installed)"
fi

# ------------------------------------------------------------- completion
if [ -n "${AMD64:-}" ]; then
    mkdir -p "$TMP/path"
    for t in ventilator worker sink; do ln -sf "$AMD64/usr/bin/boardpipe-$t" "$TMP/path/boardpipe-$t"; done
    ln -sf "$ROOT/board/bpfleet" "$TMP/path/bpfleet"
    # complete WORDS...: what the packaged completion offers for the last word.
    complete_words() {
        PATH=$TMP/path:$PATH bash -c '
            . "$0"
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
            case $1 in bpfleet) _bpfleet ;; *) _boardpipe ;; esac
            printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' \
            "$AMD64/usr/share/bash-completion/completions/boardpipe-worker" "$@" 2>&1
    }
    check "completion: boardpipe-worker --tr -> --transform" [ "$(complete_words boardpipe-worker --tr)" = "--transform " ]
    check "completion: boardpipe-worker --transform '' -> the four transforms" \
        [ "$(complete_words boardpipe-worker --transform '')" = "echo lower reverse upper " ]
    check "completion: boardpipe-sink --sync '' -> interval always none" \
        [ "$(complete_words boardpipe-sink --sync '')" = "always interval none " ]
    want=$({ "$AMD64/usr/bin/boardpipe-ventilator" --help | help_opts; "$AMD64/usr/bin/boardpipe-ventilator" --help |
        grep -E '^ +-[a-zA-Z0-9],' | grep -oE '^ +-[a-zA-Z0-9]' | tr -d ' '; } | sort | tr '\n' ' ')
    got=$(complete_words boardpipe-ventilator - | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
    check "completion: boardpipe-ventilator - offers exactly --help's options" [ "$want" = "$got" ]
    check "completion: bpfleet -i inventory.sample status '' -> its board names" \
        [ "$(complete_words bpfleet -i "$ROOT/board/inventory.sample" status '')" = \
        "$(sed 's/#.*//' "$ROOT/board/inventory.sample" | awk 'NF { print $1 }' | sort | tr '\n' ' ')" ]
    check "completion: bpfleet up -> upgrade" [ "$(complete_words bpfleet up)" = "upgrade " ]
else
    bad "no amd64 .deb: the completion is checked with its binaries"
fi

printf 'package: %d passed, %d failed (%ss)\n' "$PASSED" "$FAILED" $(($(date +%s) - T0))
[ "$FAILED" = 0 ]
