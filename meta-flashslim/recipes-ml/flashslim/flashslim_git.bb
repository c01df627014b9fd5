# nooelint: oelint.var.bbclassextend
SUMMARY = "LLM inference with weights streamed from flash, and its profiling session"
DESCRIPTION = "The flashslim engine (binary flashslim, with USDT probes), its bpftrace \
               scripts, and the systemd units and configuration that run one profiling \
               session on the device."
HOMEPAGE = "https://github.com/flashslim/flashslim"
BUGTRACKER = "https://github.com/flashslim/flashslim/issues"
SECTION = "devel"
CVE_PRODUCT = "flashslim"
# Cargo.toml says "MIT OR Apache-2.0"; both texts are at the repository root.
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "\
    file://LICENSE-MIT;md5=a3d5b46f35ef07c0a527195b5daad901 \
    file://LICENSE-APACHE;md5=3b83ef96387f14655fc854ddc3c6bd57 \
"

# Cargo.toml's workspace version; bitbake appends the commit to the package version.
PV = "0.1.0+git"

inherit cargo cargo-update-recipe-crates systemd

# The source is the commit checked out in FLASHSLIM_SRCDIR, by default the flashslim repository
# this layer sits in (three directories up), so an image carries the engine of the same commit as
# its recipes. bitbake clones it like any git source; uncommitted edits are not built (a warning
# says so; use `devtool modify flashslim` for those). See docs/yocto.md, "Engine source".
FLASHSLIM_SRCDIR ?= "${@os.path.abspath(os.path.join(d.getVar('FILE_DIRNAME'), '../../..'))}"

def flashslim_head(d):
    import subprocess
    src = d.getVar('FLASHSLIM_SRCDIR')
    git = ['git', '-C', src]
    try:
        rev = subprocess.run(git + ['rev-parse', '--verify', 'HEAD^{commit}'], check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(git + ['status', '--porcelain', '--untracked-files=no'], check=True,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, 'stderr', None) or str(e)
        bb.fatal("flashslim: FLASHSLIM_SRCDIR=%s is not a readable git checkout: %s" % (src, detail.strip()))
    if dirty:
        bb.warn("flashslim: %s has uncommitted changes; building commit %s without them" % (src, rev[:12]))
    return rev

SRC_URI = "git://${FLASHSLIM_SRCDIR};protocol=file;nobranch=1"
# Read once per parse; BB_DONT_CACHE makes every bitbake run look at the checkout again.
SRCREV := "${@flashslim_head(d)}"
BB_DONT_CACHE = "1"

# Cargo.lock's crates, fetched by bitbake. Regenerate with meta-flashslim/scripts/update-crates-inc.py.
require ${BPN}-crates.inc

# Only the engine binary, from the workspace manifest at the top of the tree. The probes feature
# (USDT notes for bpftrace) is on by default; naming it keeps it on if the defaults change.
CARGO_BUILD_FLAGS += "-p flashslim-engine --bin flashslim --features probes"
# The engine's build script records the commit (there is no .git in every build tree).
export FLASHSLIM_GIT_COMMIT = "${@d.getVar('SRCREV')[:12]}"

# The binary, the tracing scripts, the units, profile.conf and the journald drop-in are put in
# place by the repository's own installer, which the emulated-device test runs as well.
do_install() {
    sh ${S}/engine/dist/install.sh ${D} \
        --binary ${B}/target/${CARGO_TARGET_SUBDIR}/flashslim \
        --bindir ${bindir} \
        --datadir ${datadir} \
        --sysconfdir ${sysconfdir} \
        --unitdir ${systemd_system_unitdir} \
        --journald-dir ${systemd_unitdir}/journald.conf.d
}

# Set FLASHSLIM_PROFILE_AT_BOOT = "1" in local.conf to run one profiling session at every boot.
FLASHSLIM_PROFILE_AT_BOOT ??= "0"
SYSTEMD_SERVICE:${PN} = "flashslim-profile.target flashslim-profile.service"
SYSTEMD_AUTO_ENABLE:${PN} = "${@oe.utils.vartrue('FLASHSLIM_PROFILE_AT_BOOT', 'enable', 'disable', d)}"

# ${datadir}/flashslim (tracing scripts, models) and ${sysconfdir} are in the default FILES.
FILES:${PN} += "${systemd_unitdir}/journald.conf.d/50-flashslim.conf"
CONFFILES:${PN} = "${sysconfdir}/flashslim/profile.conf"

# The profile runner starts bpftrace. The kernel needs flashslim-trace.cfg (docs/yocto.md).
RDEPENDS:${PN} = "bpftrace"
