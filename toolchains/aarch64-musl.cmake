# Raspberry Pi 3/4/5 with a 64-bit OS.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(BP_TARGET_TRIPLE aarch64-linux-musl)
set(BP_TARGET_CPU cortex_a53)
set(BP_QEMU qemu-aarch64-static)
set(BP_QEMU_CPU cortex-a53)
include(${CMAKE_CURRENT_LIST_DIR}/zig-musl.cmake)
