# nooelint: oelint.var.suggestedvar.BUGTRACKER,oelint.var.suggestedvar.CVE_PRODUCT,oelint.var.suggestedvar.SECTION
SUMMARY = "Image that runs flashslim and profiles it with bpftrace"
DESCRIPTION = "systemd image with the flashslim engine, its bpftrace scripts and the \
               flashslim-profile.target session, bpftrace, and OpenSSH with sftp-server \
               plus rsync so slim-pull-logs can fetch the run directories."
LICENSE = "MIT"

inherit core-image features_check

# The units need systemd. The kernel gets BPF, BTF and uprobes only with flashslim-trace.
REQUIRED_DISTRO_FEATURES = "systemd flashslim-trace"

IMAGE_FEATURES += "ssh-server-openssh"

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    flashslim \
    bpftrace \
    openssh-sftp-server \
    rsync \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"

# Models are not built into the image. Copy them to /usr/share/flashslim/models/ (MODEL in
# /etc/flashslim/profile.conf points there). This leaves room for them, in KiB (1 GiB).
# Override with IMAGE_ROOTFS_EXTRA_SPACE:pn-flashslim-image in local.conf.
IMAGE_ROOTFS_EXTRA_SPACE = "1048576"
