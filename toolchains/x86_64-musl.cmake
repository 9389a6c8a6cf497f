# Generic x86_64 boards and PCs (baseline x86-64, no host-specific ISA).
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(BP_TARGET_TRIPLE x86_64-linux-musl)
set(BP_TARGET_CPU baseline)
set(BP_QEMU "")
include(${CMAKE_CURRENT_LIST_DIR}/zig-musl.cmake)
