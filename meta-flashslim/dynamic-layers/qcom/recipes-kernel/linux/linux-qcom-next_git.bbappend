# flashslim's tracing kernel options, only with DISTRO_FEATURES "flashslim-trace": adding this
# layer alone leaves the kernel unchanged (see docs/yocto.md, "Kernel configuration").
require ${@bb.utils.contains('DISTRO_FEATURES', 'flashslim-trace', 'linux-qcom-flashslim.inc', '', d)}
