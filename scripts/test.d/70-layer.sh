#!/usr/bin/env bash
# The Yocto layer, the kas files and the on-device files, checked offline (no bitbake, no network):
# oelint-adv, the kas JSON schema, -crates.inc freshness, SYSTEMD_SERVICE units, the kernel
# fragment, do_install through engine/dist/install.sh against FILES, systemd-analyze verify, and
# install.sh's shell hygiene. Then every check runs once more on a deliberately broken copy of
# the tree and must fail there, so none of them can pass by doing nothing.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
need_apt systemd shellcheck
need_pip oelint-adv kas jsonschema
cd "$FLASHSLIM_ROOT"

failed=0
ok() { log "ok   $*"; }
bad() { log "FAIL $*"; failed=1; }

# oelint-adv on every recipe, append and conf; includes are followed from them. Clean means no
# finding at all, not even info. Settings: meta-flashslim/.oelint.cfg.
lint() {
    local files out
    files=$(find meta-flashslim -name '*.bb' -o -name '*.bbappend' -o -name '*.conf' | sort)
    out=$(OELINT_CONFIG=meta-flashslim/.oelint.cfg oelint-adv --quiet --release wrynose $files 2>&1) \
        && [[ -z "$out" ]] || { printf '%s\n' "$out"; return 1; }
}
crates() { python3 meta-flashslim/scripts/update-crates-inc.py --check; }
layer() { python3 meta-flashslim/scripts/check-layer.py "$@"; }
shell_hygiene() { sh -n engine/dist/install.sh && shellcheck -s sh engine/dist/install.sh; }

# --- the checks, on this tree ---
for step in lint crates layer shell_hygiene; do
    if out=$($step 2>&1); then
        ok "$step"
        [[ $step == layer ]] && printf '%s\n' "$out" | sed 's/^/     /' >&2
    else
        bad "$step"
        printf '%s\n' "$out" | sed 's/^/     /' >&2
    fi
done

# --- the same checks on broken copies: each must fail ---
copy_tree() { # DEST: the parts of the repository the checks read
    mkdir -p "$1/engine"
    cp -r meta-flashslim image docs Cargo.toml Cargo.lock "$1/"
    cp -r engine/dist "$1/engine/"
    [[ -d engine/tracing ]] && cp -r engine/tracing "$1/engine/"
    return 0
}
must_fail() { # DESCRIPTION FILE SED-SCRIPT CHECK [ARGS]
    local what=$1 file=$2 edit=$3 tmp
    shift 3
    tmp=$(mktemp -d)
    copy_tree "$tmp"
    sed -i -e "$edit" "$tmp/$file"
    if cmp -s "$tmp/$file" "$file"; then
        bad "mutation did not change $file: $what"
    elif (cd "$tmp" && "$@") >/dev/null 2>&1; then
        bad "not caught: $what ($*)"
    else
        ok "caught: $what"
    fi
    rm -rf "$tmp"
}
R=meta-flashslim/recipes-ml/flashslim/flashslim_git.bb
F=meta-flashslim/recipes-kernel/linux/files/flashslim-trace.cfg
must_fail "fragment line without '='" $F '$a CONFIG_BPF_JIT y' layer fragment
must_fail "fragment symbol outside the required list" $F '$a CONFIG_FOO=y' layer fragment
must_fail "fragment lost CONFIG_UPROBES" $F '/^CONFIG_UPROBES=y$/d' layer fragment
must_fail "kernel config check that never fails" meta-flashslim/recipes-kernel/linux/flashslim-trace.inc \
    's/grep -qxF "$line" "$config" ||/true ||/' layer kconfig-check
must_fail "kernel append outside the DISTRO_FEATURES gate" \
    'meta-flashslim/dynamic-layers/qcom/recipes-kernel/linux/linux-qcom_%.bbappend' '$a KERNEL_PAHOLE = "1"' layer layer
must_fail "layer.conf for another release" meta-flashslim/conf/layer.conf 's/"wrynose"/"whinlatter"/' layer layer
must_fail "SYSTEMD_SERVICE names a missing unit" $R 's/flashslim-profile.service"/flashslim-profile.service flashslim-gone.service"/' layer recipe-install
must_fail "installed file not in FILES" $R '/^FILES:${PN} += /d' layer recipe-install
must_fail "unit with a bad value" engine/dist/systemd/flashslim-profile.service 's/^Type=oneshot/Type=oneshoot/' layer units
must_fail "unit requiring a unit that does not exist" engine/dist/systemd/flashslim-profile.target 's/sys-kernel-debug.mount/sys-kernel-debugg.mount/' layer units
must_fail "install.sh that accepts unknown options" engine/dist/install.sh 's/^    \*) die "unknown argument/    *) shift; continue; die "/' layer install-sh
must_fail "install.sh syntax error" engine/dist/install.sh '$a if then' shell_hygiene
must_fail "profile.conf without TOKENS" engine/dist/etc/profile.conf '/^TOKENS=/d' layer profile-conf
must_fail "image without rsync" meta-flashslim/recipes-core/images/flashslim-image.bb '/^    rsync \\$/d' layer image
must_fail "kas key the schema does not know" image/kas/qemuarm64.yml 's/^machine:/machin:/' layer kas
must_fail "kas format version 13" image/kas/base.yml 's/version: 14/version: 13/' layer kas
must_fail "Cargo.lock changed after the .inc was made" Cargo.lock '0,/^checksum = "[0-9a-f]/s/^checksum = "[0-9a-f]/checksum = "x/' crates
must_fail "recipe style error" $R 's/^SUMMARY = /SUMMARY =  /' lint

exit $failed
