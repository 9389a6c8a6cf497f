# Third-party dependencies: libzmq 4.3.4 (CURVE with libsodium 1.0.18),
# cmocka 1.1.5 and mimalloc 2.0.9.
#
# Cross builds (the musl presets) compile both from source tarballs, static,
# with this build's toolchain file, and check each tarball's SHA-256.
# The host preset (BP_SYSTEM_DEPS=ON) uses the system's packages instead.
#
# A tarball is taken from, in order:
#   1. BP_ZMQ_TARBALL / BP_CMOCKA_TARBALL  (a local file the user names)
#   2. BP_SOURCE_CACHE/<debian orig file>  (filled by scripts/fetch-sources,
#      which uses `apt-get source --download-only`)
#   3. BP_ZMQ_URL / BP_CMOCKA_URL          (any URL the user names, e.g. the
#      upstream release; downloaded into BP_SOURCE_CACHE)
# Whatever the source, the hash must match.
include(ExternalProject)

set(_bp_default_cache "$ENV{BP_SOURCE_CACHE}")
if(NOT _bp_default_cache)
  if(DEFINED ENV{XDG_CACHE_HOME})
    set(_bp_default_cache "$ENV{XDG_CACHE_HOME}/boardpipe/sources")
  else()
    set(_bp_default_cache "$ENV{HOME}/.cache/boardpipe/sources")
  endif()
endif()
set(BP_SOURCE_CACHE "${_bp_default_cache}" CACHE PATH
    "Directory holding third-party source tarballs (outside build/)")

set(BP_ZMQ_SHA256 0ff5a531c9ffaf0dfdc7dc78d13d1383088f454896d252934c429b2554d10559)
set(BP_CMOCKA_SHA256 f0ccd8242d55e2fd74b16ba518359151f6f8383ff8aef4976e48393f77bba8b6)
set(BP_MIMALLOC_SHA256 cbc9d207ff105ad1f0cb739c378076143a6452b8d0624309cea0abfb040e972b)
set(BP_SODIUM_SHA256 d59323c6b712a1519a5daf710b68f5e7fde57040845ffec53850911f10a5d4f4)
set(BP_ZMQ_TARBALL "" CACHE FILEPATH "Local libzmq 4.3.4 source tarball")
set(BP_CMOCKA_TARBALL "" CACHE FILEPATH "Local cmocka 1.1.5 source tarball")
set(BP_ZMQ_URL "" CACHE STRING "URL of a libzmq 4.3.4 tarball with the same SHA-256")
set(BP_CMOCKA_URL "" CACHE STRING "URL of a cmocka 1.1.5 tarball with the same SHA-256")
set(BP_MIMALLOC_TARBALL "" CACHE FILEPATH "Local mimalloc 2.0.9 source tarball")
set(BP_MIMALLOC_URL "" CACHE STRING "URL of a mimalloc 2.0.9 tarball with the same SHA-256")
set(BP_SODIUM_TARBALL "" CACHE FILEPATH "Local libsodium 1.0.18 source tarball")
set(BP_SODIUM_URL "" CACHE STRING "URL of a libsodium 1.0.18 tarball with the same SHA-256")

# bp_resolve_tarball(<out-var> <name> <cache-file-name> <sha256> <local> <url>)
function(bp_resolve_tarball out name file sha local url)
  if(local)
    set(path "${local}")
  elseif(EXISTS "${BP_SOURCE_CACHE}/${file}")
    set(path "${BP_SOURCE_CACHE}/${file}")
  elseif(url)
    set(path "${BP_SOURCE_CACHE}/${file}")
    message(STATUS "boardpipe: downloading ${name} from ${url}")
    file(DOWNLOAD "${url}" "${path}" EXPECTED_HASH SHA256=${sha} STATUS st)
    list(GET st 0 code)
    if(NOT code EQUAL 0)
      file(REMOVE "${path}")
      message(FATAL_ERROR "boardpipe: download of ${name} failed: ${st}")
    endif()
  else()
    message(FATAL_ERROR
      "boardpipe: no ${name} source tarball. Run scripts/fetch-sources "
      "(Debian: apt-get source), or pass -D<TARBALL>=/path/to/${file} or "
      "-D<URL>=... with SHA-256 ${sha}.")
  endif()
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "boardpipe: ${name} tarball ${path} does not exist")
  endif()
  file(SHA256 "${path}" got)
  if(NOT got STREQUAL sha)
    message(FATAL_ERROR "boardpipe: ${path}: SHA-256 ${got}, expected ${sha}")
  endif()
  set(${out} "${path}" PARENT_SCOPE)
endfunction()

bp_resolve_tarball(_zmq_tgz libzmq zeromq3_4.3.4.orig.tar.gz
  ${BP_ZMQ_SHA256} "${BP_ZMQ_TARBALL}" "${BP_ZMQ_URL}")
bp_resolve_tarball(_cmocka_tgz cmocka cmocka_1.1.5.orig.tar.xz
  ${BP_CMOCKA_SHA256} "${BP_CMOCKA_TARBALL}" "${BP_CMOCKA_URL}")
bp_resolve_tarball(_mimalloc_tgz mimalloc mimalloc_2.0.9+ds.orig.tar.xz
  ${BP_MIMALLOC_SHA256} "${BP_MIMALLOC_TARBALL}" "${BP_MIMALLOC_URL}")
bp_resolve_tarball(_sodium_tgz libsodium libsodium_1.0.18.orig.tar.gz
  ${BP_SODIUM_SHA256} "${BP_SODIUM_TARBALL}" "${BP_SODIUM_URL}")

find_program(BP_PATCH patch REQUIRED)
find_program(BP_AUTORECONF autoreconf REQUIRED)
find_program(BP_MAKE NAMES make gmake REQUIRED)

# Debian's patch to libsodium 1.0.18 (1.0.18-1+deb12u1, bookworm-security).
set(_sodium_patches
  ${PROJECT_SOURCE_DIR}/third_party/patches/libsodium-1.0.18-CVE-2025-69277.patch)

# Patches to libzmq 4.3.4, applied in this order.
#  - secure-allocator-rebind: builds with zig's libc++ (see toolchains/README.md).
#  - no-sstream: libzmq formats four small strings (the peer's fd and
#    SO_PEERCRED ids on every connection, an endpoint, a thread name) with
#    std::ostringstream, which links libc++'s whole locale and iostream
#    machinery: about 320 KB of each stripped tool. snprintf and
#    std::string concatenation give the same strings.
set(_zmq_patches
  ${PROJECT_SOURCE_DIR}/third_party/patches/libzmq-4.3.4-secure-allocator-rebind.patch
  ${PROJECT_SOURCE_DIR}/third_party/patches/libzmq-4.3.4-no-sstream.patch)
string(REPLACE ";" "|" _zmq_patch_args "${_zmq_patches}")

# Dependency cache: the built libzmq and cmocka (their install trees) are
# kept in BP_DEPS_CACHE/<triple>-<cpu>-<key>, where <key> hashes everything
# that decides their bits: the source tarballs' SHA-256, the patches, this
# file (the ExternalProject options), the files included into their
# builds, the toolchain files and wrappers, and the compiler's version
# (zig's clang). Every preset, build directory and checkout on the machine
# that builds the same target the same way takes them from there instead
# of building them again: scripts/test, scripts/package, the repro test
# and docker/check (which mounts the cache into its podman build). An
# entry is published complete or not at all (copied beside, then renamed)
# and only ever read, so a changed recipe makes a new key rather than
# changing an entry.
# BP_DEPS_CACHE empty (-DBP_DEPS_CACHE= or the environment's BP_DEPS_CACHE
# set empty) builds them in this build directory only.
if(DEFINED ENV{BP_DEPS_CACHE})
  set(_bp_default_deps "$ENV{BP_DEPS_CACHE}")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_bp_default_deps "$ENV{XDG_CACHE_HOME}/boardpipe/deps")
else()
  set(_bp_default_deps "$ENV{HOME}/.cache/boardpipe/deps")
endif()
set(BP_DEPS_CACHE "${_bp_default_deps}" CACHE PATH
    "Shared cache of built libzmq/cmocka per target (empty: off)")

set(_key_text "boardpipe deps v1\nlibzmq ${BP_ZMQ_SHA256}\ncmocka ${BP_CMOCKA_SHA256}\nmimalloc ${BP_MIMALLOC_SHA256}\nlibsodium ${BP_SODIUM_SHA256}\n")
get_filename_component(_tc_dir "${CMAKE_TOOLCHAIN_FILE}" DIRECTORY)
file(GLOB _tc_files "${_tc_dir}/*.cmake" "${_tc_dir}/zig/*")
list(SORT _tc_files)
foreach(f IN LISTS _zmq_patches _sodium_patches _tc_files ITEMS
    "${CMAKE_CURRENT_LIST_FILE}"
    "${PROJECT_SOURCE_DIR}/cmake/BpApplyPatches.cmake"
    "${PROJECT_SOURCE_DIR}/cmake/cmocka-musl.cmake"
    "${PROJECT_SOURCE_DIR}/cmake/libzmq-unity.cmake")
  file(SHA256 "${f}" h)
  get_filename_component(n "${f}" NAME)
  string(APPEND _key_text "${n} ${h}\n")
endforeach()
foreach(c IN ITEMS "${CMAKE_C_COMPILER}" "${CMAKE_CXX_COMPILER}")
  execute_process(COMMAND "${c}" --version OUTPUT_VARIABLE v ERROR_QUIET
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "boardpipe: ${c} --version failed")
  endif()
  # Not where it is installed: checkouts, the Docker build and the repro
  # test each have their own .venv with the same zig.
  string(REGEX REPLACE "InstalledDir:[^\n]*" "" v "${v}")
  string(APPEND _key_text "${v}")
endforeach()
get_filename_component(_cc_dir "${CMAKE_C_COMPILER}" DIRECTORY)
if(EXISTS "${_cc_dir}/run")
  execute_process(COMMAND "${_cc_dir}/run" version OUTPUT_VARIABLE v ERROR_QUIET)
  string(APPEND _key_text "zig ${v}")
endif()
string(SHA256 _key "${_key_text}")
string(SUBSTRING "${_key}" 0 16 _key)
set(_entry "")
if(BP_DEPS_CACHE)
  set(_entry "${BP_DEPS_CACHE}/${BP_TARGET_TRIPLE}-${BP_TARGET_CPU}-${_key}")
endif()

if(_entry AND EXISTS "${_entry}/.complete")
  message(STATUS "boardpipe: libsodium, libzmq, cmocka and mimalloc from the dependency cache: ${_entry}")
  set(_deps "${_entry}")
  # The names the rest of the build may depend on.
  add_custom_target(libsodium_ep)
  add_custom_target(libzmq_ep)
  add_custom_target(cmocka_ep)
  add_custom_target(mimalloc_ep)
else()
  set(_deps "${CMAKE_BINARY_DIR}/deps")
  set(_dep_args
    -DCMAKE_TOOLCHAIN_FILE=${CMAKE_TOOLCHAIN_FILE}
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_INSTALL_PREFIX=${_deps}
    -DCMAKE_INSTALL_LIBDIR=lib
    -DCMAKE_POSITION_INDEPENDENT_CODE=OFF)

  # The build directories are per key: a new recipe or toolchain gets a
  # fresh CMake cache for libzmq and cmocka, so what is published under a
  # key is what the key describes (an old build directory would keep the
  # flags of its first configure).
  # libsodium for libzmq's CURVE: libzmq's bundled tweetnacl ran CURVE at
  # 0.09x plain (100 B tasks) on x86_64-musl. --enable-minimal: the
  # crypto_box/secretbox/scalarmult/randombytes CURVE needs, not the rest.
  # The orig tarball has no configure: autoreconf makes it (not
  # autogen.sh, which would download config.guess). Same compiler, flags
  # (the toolchain's -target/-mcpu/-O2/-ffile-prefix-map) and ar as the
  # CMake projects.
  string(REPLACE ";" "|" _sodium_patch_args "${_sodium_patches}")
  ExternalProject_Add(libsodium_ep
    BINARY_DIR "${CMAKE_BINARY_DIR}/libsodium_ep-prefix/src/libsodium_ep-build-${_key}"
    URL "${_sodium_tgz}"
    URL_HASH SHA256=${BP_SODIUM_SHA256}
    DOWNLOAD_EXTRACT_TIMESTAMP ON
    PATCH_COMMAND ${CMAKE_COMMAND} -DPATCH=${BP_PATCH} -DPATCHES=${_sodium_patch_args}
      -P ${PROJECT_SOURCE_DIR}/cmake/BpApplyPatches.cmake
      COMMAND ${BP_AUTORECONF} -fi
    CONFIGURE_COMMAND <SOURCE_DIR>/configure --host=${BP_TARGET_TRIPLE}
      --prefix=${_deps} --libdir=${_deps}/lib --includedir=${_deps}/include
      --disable-shared --enable-static --enable-minimal --disable-pie
      --disable-ssp --disable-debug --disable-dependency-tracking
      "CC=${CMAKE_C_COMPILER}" "CFLAGS=${CMAKE_C_FLAGS}"
      "CCAS=${CMAKE_C_COMPILER}" "CCASFLAGS=${CMAKE_C_FLAGS}"
      "AR=${CMAKE_AR}" "RANLIB=${CMAKE_RANLIB}"
    BUILD_COMMAND ${BP_MAKE} -s
    INSTALL_COMMAND ${BP_MAKE} -s install
      # They hold this build directory's paths; nothing here reads them.
      COMMAND ${CMAKE_COMMAND} -E rm -rf ${_deps}/lib/libsodium.la ${_deps}/lib/pkgconfig/libsodium.pc
    BUILD_BYPRODUCTS ${_deps}/lib/libsodium.a
    LOG_PATCH ON LOG_CONFIGURE ON LOG_BUILD ON LOG_INSTALL ON LOG_OUTPUT_ON_FAILURE ON)

  ExternalProject_Add(libzmq_ep
    BINARY_DIR "${CMAKE_BINARY_DIR}/libzmq_ep-prefix/src/libzmq_ep-build-${_key}"
    URL "${_zmq_tgz}"
    URL_HASH SHA256=${BP_ZMQ_SHA256}
    DOWNLOAD_EXTRACT_TIMESTAMP ON
    DEPENDS libsodium_ep
    PATCH_COMMAND ${CMAKE_COMMAND} -DPATCH=${BP_PATCH} -DPATCHES=${_zmq_patch_args}
      -P ${PROJECT_SOURCE_DIR}/cmake/BpApplyPatches.cmake
    CMAKE_ARGS ${_dep_args}
      -DBUILD_SHARED=OFF -DBUILD_STATIC=ON -DBUILD_TESTS=OFF
      -DWITH_LIBSODIUM=ON -DWITH_LIBSODIUM_STATIC=ON
      -DSODIUM_INCLUDE_DIRS=${_deps}/include
      -DSODIUM_LIBRARIES=${_deps}/lib/libsodium.a
      -DENABLE_CURVE=ON -DENABLE_DRAFTS=OFF
      -DWITH_DOCS=OFF -DWITH_DOC=OFF -DWITH_PERF_TOOL=OFF -DWITH_LIBBSD=OFF
      -DENABLE_CPACK=OFF -DENABLE_PRECOMPILED=OFF -DENABLE_WS=OFF
      -DWITH_TLS=OFF -DWITH_NSS=OFF -DLIBZMQ_PEDANTIC=OFF
      -DCMAKE_PROJECT_INCLUDE=${PROJECT_SOURCE_DIR}/cmake/libzmq-unity.cmake
    BUILD_BYPRODUCTS ${_deps}/lib/libzmq.a
    LOG_CONFIGURE ON LOG_BUILD ON LOG_INSTALL ON LOG_OUTPUT_ON_FAILURE ON)
  # libzmq falls back to tweetnacl with only a warning when it does not
  # find libsodium: make that an error.
  ExternalProject_Add_Step(libzmq_ep check_sodium
    COMMAND grep -q "define ZMQ_USE_LIBSODIUM" <BINARY_DIR>/platform.hpp
    COMMENT "boardpipe: libzmq uses libsodium for CURVE"
    DEPENDEES configure DEPENDERS build)

  # Serialised after libzmq: both would otherwise build zig's libc/libc++ for
  # this target at the same time on a cold cache.
  ExternalProject_Add(cmocka_ep
    BINARY_DIR "${CMAKE_BINARY_DIR}/cmocka_ep-prefix/src/cmocka_ep-build-${_key}"
    URL "${_cmocka_tgz}"
    URL_HASH SHA256=${BP_CMOCKA_SHA256}
    DOWNLOAD_EXTRACT_TIMESTAMP ON
    DEPENDS libzmq_ep
    CMAKE_ARGS ${_dep_args}
      -DWITH_STATIC_LIB=ON -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF
      # Not CMAKE_C_FLAGS: that would replace the toolchain's -target flags.
      -DCMAKE_PROJECT_INCLUDE=${PROJECT_SOURCE_DIR}/cmake/cmocka-musl.cmake
    BUILD_BYPRODUCTS ${_deps}/lib/libcmocka-static.a
    LOG_CONFIGURE ON LOG_BUILD ON LOG_INSTALL ON LOG_OUTPUT_ON_FAILURE ON)

  # mimalloc replaces musl's malloc in every static binary. musl's mallocng
  # gives large blocks back to the kernel on free: about one mmap + munmap
  # (and their page faults) per ZeroMQ message, which made the musl build
  # half as fast as the glibc one. One object file (src/static.c), linked
  # whole, so its malloc/free/calloc/realloc/... win over libc.a's.
  ExternalProject_Add(mimalloc_ep
    BINARY_DIR "${CMAKE_BINARY_DIR}/mimalloc_ep-prefix/src/mimalloc_ep-build-${_key}"
    URL "${_mimalloc_tgz}"
    URL_HASH SHA256=${BP_MIMALLOC_SHA256}
    DOWNLOAD_EXTRACT_TIMESTAMP ON
    DEPENDS cmocka_ep
    CMAKE_ARGS ${_dep_args}
      -DMI_BUILD_SHARED=OFF -DMI_BUILD_STATIC=OFF -DMI_BUILD_OBJECT=ON
      -DMI_BUILD_TESTS=OFF -DMI_OVERRIDE=ON -DMI_INSTALL_TOPLEVEL=ON
      -DMI_SECURE=OFF -DMI_DEBUG_FULL=OFF -DMI_PADDING=OFF
    BUILD_BYPRODUCTS ${_deps}/lib/mimalloc.o
    LOG_CONFIGURE ON LOG_BUILD ON LOG_INSTALL ON LOG_OUTPUT_ON_FAILURE ON)

  if(_entry)
    message(STATUS "boardpipe: libsodium, libzmq, cmocka and mimalloc built here, then kept in ${_entry}")
    file(WRITE "${CMAKE_BINARY_DIR}/deps-key.txt" "${_key_text}")
    add_custom_target(bp_deps_publish ALL
      COMMAND ${CMAKE_COMMAND} -DSRC=${_deps} -DDST=${_entry}
        -DKEY_FILE=${CMAKE_BINARY_DIR}/deps-key.txt
        -P ${PROJECT_SOURCE_DIR}/cmake/BpDepsPublish.cmake
      COMMENT "boardpipe: keeping libsodium, libzmq, cmocka and mimalloc in the dependency cache"
      VERBATIM)
    add_dependencies(bp_deps_publish mimalloc_ep)
  endif()
endif()

# Where this build's libzmq and cmocka are (tests/repro compares them).
file(WRITE "${CMAKE_BINARY_DIR}/deps-prefix.txt" "${_deps}")
file(MAKE_DIRECTORY ${_deps}/include)

add_library(bp_zmq STATIC IMPORTED GLOBAL)
set_target_properties(bp_zmq PROPERTIES
  IMPORTED_LOCATION ${_deps}/lib/libzmq.a
  INTERFACE_INCLUDE_DIRECTORIES ${_deps}/include)
add_dependencies(bp_zmq libzmq_ep mimalloc_ep)
set_property(TARGET bp_zmq APPEND PROPERTY
  INTERFACE_LINK_LIBRARIES ${_deps}/lib/libsodium.a)
# Whatever links libzmq (the tools, the tests, the raw bench) gets mimalloc
# as its malloc: an object file on the link line is linked whole. A link
# option, not a library: CMake moves an object file it knows as generated
# (built here) to the front of the link and leaves one from the cache at
# the end, which changed the binaries' layout (tests/repro).
set_property(TARGET bp_zmq APPEND PROPERTY
  INTERFACE_LINK_OPTIONS ${_deps}/lib/mimalloc.o)

add_library(bp_cmocka STATIC IMPORTED GLOBAL)
set_target_properties(bp_cmocka PROPERTIES
  IMPORTED_LOCATION ${_deps}/lib/libcmocka-static.a
  INTERFACE_INCLUDE_DIRECTORIES ${_deps}/include
  INTERFACE_COMPILE_DEFINITIONS _UINTPTR_T_DEFINED)
add_dependencies(bp_cmocka cmocka_ep)
