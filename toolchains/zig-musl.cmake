# Shared part of the zig/musl toolchain files. A target file sets
#   BP_TARGET_TRIPLE  zig target triple (e.g. aarch64-linux-musl)
#   BP_TARGET_CPU     zig CPU name, passed as -mcpu (e.g. cortex_a53)
#   BP_QEMU           qemu-user binary, empty for a target that runs natively
#   BP_QEMU_CPU       qemu -cpu name matching BP_TARGET_CPU
#   CMAKE_SYSTEM_PROCESSOR
# and then includes this file.
set(CMAKE_SYSTEM_NAME Linux)

set(_bp_zig "${CMAKE_CURRENT_LIST_DIR}/zig")
set(CMAKE_C_COMPILER "${_bp_zig}/cc")
set(CMAKE_CXX_COMPILER "${_bp_zig}/c++")
set(CMAKE_AR "${_bp_zig}/ar" CACHE FILEPATH "zig ar")
set(CMAKE_RANLIB "${_bp_zig}/ranlib" CACHE FILEPATH "zig ranlib")

# -O2 -s in every compile and link, CMake's compiler checks included. zig
# builds musl and libc++ for a target once per optimisation mode (-O1..-O3
# are all its ReleaseFast) and strip mode (-s: without debug info), and
# the checks run without the build type's flags or the Release link's -s:
# a first configure made zig build a Debug (later: unstripped) musl and
# libc++ that no binary uses, then the stripped ReleaseFast ones at the
# first link (measured for aarch64: 101 s for one build on a quiet 2-core
# machine; the second one is gone). The build type's -O3 comes after it
# and wins; nothing here is built with debug info. An -O is needed anyway:
# zig adds -fsanitize=undefined -fsanitize-trap to unoptimised C.
set(_bp_arch "-target ${BP_TARGET_TRIPLE} -mcpu=${BP_TARGET_CPU} -O2 -s")
# Reproducible builds (toolchains/README.md): no absolute path of the
# checkout, the build directory or zig's installation (whose libc/libc++
# headers are in the debug info zig cc emits) reaches an object: __FILE__
# in libzmq's assertions, DWARF comp_dir and file names. The toolchain
# file is read again by every project it builds, so libzmq and cmocka
# (ExternalProject) map their own source and build directories too. zig
# already makes __DATE__/__TIME__ an error (-Werror=date-time) and links
# with --build-id=none.
if(NOT BP_ZIG_LIB_DIR)
  execute_process(COMMAND ${_bp_zig}/run env OUTPUT_VARIABLE _bp_zig_env
    RESULT_VARIABLE _bp_rc ERROR_QUIET)
  if(_bp_rc EQUAL 0 AND _bp_zig_env MATCHES "\\.lib_dir = \"([^\"]+)\"")
    set(BP_ZIG_LIB_DIR "${CMAKE_MATCH_1}")
  endif()
endif()
# Handed to try_compile() projects, which read this file again.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES BP_ZIG_LIB_DIR)
set(_bp_repro "-ffile-prefix-map=${CMAKE_SOURCE_DIR}=. -ffile-prefix-map=${CMAKE_BINARY_DIR}=.")
if(BP_ZIG_LIB_DIR)
  string(APPEND _bp_repro " -ffile-prefix-map=${BP_ZIG_LIB_DIR}=/zig/lib")
endif()
# Unused code of libzmq/libc++ is dropped at link time: about 5% smaller.
# (-Os would save 24% more but measured ~20% slower; see toolchains/README.md.)
set(CMAKE_C_FLAGS_INIT "${_bp_arch} -ffunction-sections -fdata-sections ${_bp_repro}")
set(CMAKE_CXX_FLAGS_INIT "${_bp_arch} -ffunction-sections -fdata-sections ${_bp_repro}")
set(CMAKE_ASM_FLAGS_INIT "${_bp_arch} ${_bp_repro}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -Wl,--gc-sections")

set(BP_TARGET_TRIPLE "${BP_TARGET_TRIPLE}" CACHE STRING "zig target triple")
set(BP_TARGET_CPU "${BP_TARGET_CPU}" CACHE STRING "zig -mcpu value")

if(BP_QEMU)
  find_program(BP_QEMU_PROGRAM ${BP_QEMU} REQUIRED)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${BP_QEMU_PROGRAM};-cpu;${BP_QEMU_CPU}")
else()
  # Same architecture as the build machine: a static musl binary runs as is.
  # An emulator is still named so try_run() works while CMAKE_CROSSCOMPILING.
  set(CMAKE_CROSSCOMPILING_EMULATOR "/usr/bin/env")
endif()

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
