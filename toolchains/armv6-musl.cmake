# Raspberry Pi Zero/Zero W/1 (ARM1176JZF-S, ARMv6, VFPv2 hard float).
# The CPU must reach the compiler: without -mcpu zig emits ARMv7 code that
# qemu's default CPU runs and a Pi Zero does not. The emulator is pinned to
# arm1176 for the same reason.
set(CMAKE_SYSTEM_PROCESSOR armv6l)
set(BP_TARGET_TRIPLE arm-linux-musleabihf)
set(BP_TARGET_CPU arm1176jzf_s)
set(BP_QEMU qemu-arm-static)
set(BP_QEMU_CPU arm1176)
include(${CMAKE_CURRENT_LIST_DIR}/zig-musl.cmake)
