#!/usr/bin/env bash
# The house limits on size (../shared/docs/STYLE.md): no file in src/ over 1,000 lines, and no
# function over 80 lines unless a comment just above it says why it stays long (the words
# "long because", e.g. "Long because it is one switch over every protocol event."). Lists every
# file and function over the limit and exits 1 if there is one; `make lint-size`, part of `make test`.
#
#   scripts/lint-size.sh [FILE...]     default: every src/*.c and src/*/*.[ch]
#   MAX_FILE_LINES=1000 MAX_FUNC_LINES=80 (the limits; lowered only to see what comes next)
#
# It relies on the house layout (make format): a function's body opens with "{" alone at column 0
# and closes with "}" at column 0, and nothing else at file scope does. A function's length is its
# body's, braces included. The reason is looked for in the comment block that ends on the line
# above the signature (a blank line between them and it does not count).
set -euo pipefail

if [ $# -eq 0 ]; then
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    shopt -s nullglob
    set -- src/*.c src/*/*.c src/*/*.h
fi

exec awk -v max_file="${MAX_FILE_LINES:-1000}" -v max_func="${MAX_FUNC_LINES:-80}" '
function reset_decl() { sig = 0; sig_text = ""; }
FNR == 1 {
    if (NR > 1) end_file();
    depth = 0; in_comment = 0; in_macro = 0; comment = ""; comment_end = -1; reset_decl();
}
function end_file() {
    if (last_fnr > max_file) {
        printf "%s: %d lines (over %d): split it along a seam\n", last_file, last_fnr, max_file;
        bad++;
    }
}
{ last_file = FILENAME; last_fnr = FNR; }
# Inside a body: only its closing brace matters.
depth == 1 {
    if ($0 == "}") {
        depth = 0;
        n = FNR - body + 1;
        if (n > max_func && reason == 0) {
            printf "%s:%d: %s: %d lines (over %d) and no \"long because\" comment above it\n",
                   FILENAME, sig, name, n, max_func;
            bad++;
        }
        nfunc++;
        comment = ""; reset_decl();
    }
    next;
}
# File scope.
in_comment {
    comment = comment " " $0;
    if (index($0, "*/")) { in_comment = 0; comment_end = FNR; }
    next;
}
/^[ \t]*\/[*\/]/ && !sig {
    if (comment_end != FNR - 1) comment = "";
    comment = comment " " $0;
    if (substr($0, 1, 2) == "//" || index(substr($0, 3), "*/")) comment_end = FNR;
    else in_comment = 1;
    next;
}
/^[ \t]*$/ { comment = ""; comment_end = -1; reset_decl(); next; }
# Preprocessor lines, with their continuations.
/^#/ || in_macro { in_macro = ($0 ~ /\\$/); next; }
$0 == "{" && sig {
    depth = 1; body = FNR;
    s = sig_text; sub(/\(.*/, "", s); sub(/.*[^A-Za-z0-9_]/, "", s); name = s;
    reason = tolower(comment) ~ /long because/;
    next;
}
{
    if (!sig) {
        sig = FNR;
        if (comment_end != FNR - 1) comment = "";
    }
    sig_text = sig_text " " $0;
    # A declaration or definition that ends on this line (prototype, variable, struct, one-line
    # function) is not the start of a body.
    if ($0 ~ /[;}]$/ || $0 ~ /\)[^(]*;/) { comment = ""; reset_decl(); }
}
END {
    if (NR > 0) end_file();
    if (bad) { printf "lint-size: %d over the limits (see ../shared/docs/STYLE.md)\n", bad; exit 1; }
    printf "lint-size: %d functions, none over %d lines without a reason; no file over %d lines\n",
           nfunc, max_func, max_file;
}' "$@"
