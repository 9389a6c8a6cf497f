#!/bin/sh
# Writes a manual page from a tool's --help with help2man (called by
# cmake/BpManPages.cmake), so the page cannot drift from --help:
#   manpage.sh OUT NAME VERSION DESCRIPTION INCLUDE TOOL [EMULATOR...]
# NAME is the installed name (boardpipe-worker, bpfleet); TOOL the program
# to run (under EMULATOR when given). The page's sections are --help's,
# then INCLUDE's (docs/man/NAME.h2m: EXIT STATUS, FILES, EXAMPLES, ...);
# for the three boardpipe tools an ENVIRONMENT section is made from the
# long options --help lists (every option is also BP_<NAME>). The SYNOPSIS
# names NAME ("Usage: worker" in --help becomes "boardpipe-worker"). The
# page's date is $SOURCE_DATE_EPOCH (the caller sets the changelog's).
set -eu
out=$1 name=$2 version=$3 desc=$4 include=$5
shift 5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The wrapper help2man runs, named NAME.
{
    echo '#!/bin/sh'
    # shellcheck disable=SC2016 # the wrapper's own $1
    printf 'if [ "${1:-}" = --help ]; then\n'
    printf '    '
    for w in "$@"; do printf "'%s' " "$w"; done
    printf -- '--help | sed "1s/^Usage: [^ ]*/Usage: %s/"\n' "$name"
    printf '    exit 0\nfi\nexec '
    for w in "$@"; do printf "'%s' " "$w"; done
    printf '"$@"\n'
} >"$tmp/$name"
chmod 755 "$tmp/$name"
"$tmp/$name" --help >"$tmp/help" || { echo "manpage.sh: $* --help failed" >&2; exit 1; }
cp "$include" "$tmp/include"
case $name in
boardpipe-*)
    {
        printf '\n[ENVIRONMENT]\n'
        printf 'Every option can also be given as an environment variable: \\fBBP_\\fR and\n'
        printf 'its long name in capitals, dashes as underscores; an option without a\n'
        printf 'value is on when set to 1. The command line wins. %s reads:\n' "$name"
        sed -n 's/^ \{1,\}\(-[a-zA-Z0-9], \)\{0,1\}--\([a-z0-9-]*\).*/\2/p' "$tmp/help" |
            grep -vx -e help -e version -e keygen |
            while read -r o; do
                v=$(printf '%s' "$o" | tr 'a-z-' 'A-Z_')
                printf '.TP\n.B BP_%s\nas \\fB\\-\\-%s\\fR\n' "$v" "$(printf '%s' "$o" | sed 's/-/\\-/g')"
            done
        printf '\\fB\\-\\-help\\fR, \\fB\\-\\-version\\fR and \\fB\\-\\-keygen\\fR have no variable.\n'
    } >>"$tmp/include"
    ;;
esac
help2man --no-info --version-string="$name (boardpipe) $version" \
    --name="$desc" --section=1 --source="boardpipe $version" --manual="boardpipe" \
    --include="$tmp/include" --output="$tmp/page" "$tmp/$name"
mv "$tmp/page" "$out"
