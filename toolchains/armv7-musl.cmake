# Raspberry Pi 2 and Pi 3/4 with a 32-bit OS (ARMv7-A, hard float).
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(BP_TARGET_TRIPLE arm-linux-musleabihf)
set(BP_TARGET_CPU cortex_a7)
set(BP_QEMU qemu-arm-static)
set(BP_QEMU_CPU cortex-a7)
include(${CMAKE_CURRENT_LIST_DIR}/zig-musl.cmake)
