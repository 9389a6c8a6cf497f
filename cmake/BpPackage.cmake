# Packaging of the static musl builds with CPack.
#
# Per musl preset, `cpack` run in build/<preset> writes into
# build/<preset>/package/:
#   boardpipe-<version>-<target>.tar.gz   always (target = x86_64-musl, ...)
#   boardpipe_<version>_<debarch>.deb     when the target maps to a Debian
#                                         architecture (BP_DEB_ARCH):
#       x86_64-musl -> amd64, aarch64-musl -> arm64,
#       armv6-musl  -> armhf (ARMv6 code runs on every Pi; armv7-musl gets
#                     no .deb so the two never fight over the armhf name)
# Both hold the same tree, laid out as on the board:
#   usr/bin/boardpipe-{ventilator,worker,sink}    (static, stripped)
#   usr/share/man/man1/boardpipe-*.1.gz           (cmake/BpManPages.cmake)
#   usr/share/bash-completion/completions/boardpipe-{ventilator,worker,sink}
#   lib/systemd/system/boardpipe-worker.service   (from board/systemd/)
#   lib/systemd/system/boardpipe-sink.service, boardpipe-ventilator@.service
#                                                 (cmake/package/systemd/)
#   etc/default/boardpipe-{worker,sink,ventilator}  (settings; conffiles)
#   usr/share/doc/boardpipe/README
#   usr/share/doc/boardpipe/copyright             (DEP-5: our license, MIT,
#                                                  and each linked component)
#   usr/share/doc/boardpipe/changelog.gz
#   usr/share/doc/boardpipe/notices/*             (every file of
#                                                  third_party/notices/)
#   usr/share/doc/boardpipe/patches/*.patch       (our patches to libzmq)
#   usr/share/lintian/overrides/boardpipe         (.deb only)
# and the tarball additionally has README and LICENSE at its top.
# scripts/package runs cpack for every built musl preset and collects the
# results into dist/.
#
# The host preset (glibc, dynamic, sanitised) is not shipped.
if(BP_SYSTEM_DEPS)
  return()
endif()

set(_bp_pkg_src ${PROJECT_SOURCE_DIR}/cmake/package)
set(_bp_pkg_bin ${PROJECT_BINARY_DIR}/cpack-files)

# Target name as used by the presets: armv7l -> armv7-musl.
string(REGEX REPLACE "l$" "" _bp_arch "${CMAKE_SYSTEM_PROCESSOR}")
set(BP_PACKAGE_TARGET "${_bp_arch}-musl" CACHE STRING
    "Target name in package file names (x86_64-musl, aarch64-musl, ...)")

if(BP_TARGET_TRIPLE MATCHES "^x86_64-")
  set(_bp_deb amd64)
elseif(BP_TARGET_TRIPLE MATCHES "^aarch64-")
  set(_bp_deb arm64)
elseif(BP_TARGET_TRIPLE MATCHES "^arm-.*eabihf$" AND BP_TARGET_CPU STREQUAL "arm1176jzf_s")
  set(_bp_deb armhf)
else()
  set(_bp_deb "")
endif()
set(BP_DEB_ARCH "${_bp_deb}" CACHE STRING
    "Debian architecture of this target's .deb; empty: no .deb")

# Installed paths (relative to /; the packages are rooted at /).
set(BP_PKG_BINDIR usr/bin)
set(BP_PKG_UNITDIR lib/systemd/system)
set(BP_PKG_DEFAULTDIR etc/default)
set(BP_PKG_DOCDIR usr/share/doc/boardpipe)

set(BP_PKG_MANDIR usr/share/man/man1)
set(BP_PKG_COMPLETIONDIR usr/share/bash-completion/completions)

set(BP_WORKER /${BP_PKG_BINDIR}/boardpipe-worker)
set(BP_ENVFILE /${BP_PKG_DEFAULTDIR}/boardpipe-worker)
set(BP_PKG_BIN /${BP_PKG_BINDIR})
set(BP_PKG_ETC_DEFAULT /${BP_PKG_DEFAULTDIR})
set(_bp_unit_in ${PROJECT_SOURCE_DIR}/board/systemd/boardpipe-worker.service.in)
configure_file(${_bp_unit_in} ${_bp_pkg_bin}/boardpipe-worker.service.tmp @ONLY)
# The package has the manual page the unit points to (bpfleet's boards do
# not: there, systemd-analyze verify would fail on it).
file(READ ${_bp_pkg_bin}/boardpipe-worker.service.tmp _bp_unit)
string(REPLACE "\nDescription=boardpipe worker\n"
       "\nDescription=boardpipe worker\nDocumentation=man:boardpipe-worker(1)\n" _bp_unit "${_bp_unit}")
file(CONFIGURE OUTPUT ${_bp_pkg_bin}/boardpipe-worker.service CONTENT "${_bp_unit}" @ONLY)
# The host roles' units share their sandbox (host-unit-common.in).
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_bp_pkg_src}/systemd/host-unit-common.in)
file(READ ${_bp_pkg_src}/systemd/host-unit-common.in BP_HOST_UNIT_COMMON)
string(STRIP "${BP_HOST_UNIT_COMMON}" BP_HOST_UNIT_COMMON)
set(_bp_host_units boardpipe-sink.service boardpipe-ventilator@.service)
foreach(u ${_bp_host_units})
  configure_file(${_bp_pkg_src}/systemd/${u}.in ${_bp_pkg_bin}/${u} @ONLY)
endforeach()
configure_file(${_bp_pkg_src}/README.in ${_bp_pkg_bin}/README @ONLY)
configure_file(${_bp_pkg_src}/conffiles.in ${_bp_pkg_bin}/deb/conffiles @ONLY)
# configure_file (not file(COPY)): an edited script configures again.
foreach(s postinst prerm postrm)
  configure_file(${_bp_pkg_src}/${s} ${_bp_pkg_bin}/deb/${s} COPYONLY
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
                        GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()
# changelog.gz as Debian wants it (gzip -9n: no name, no time).
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_bp_pkg_src}/changelog)
find_program(BP_GZIP_PROGRAM gzip REQUIRED)
execute_process(COMMAND ${BP_GZIP_PROGRAM} -9 -n -c ${_bp_pkg_src}/changelog
  OUTPUT_FILE ${_bp_pkg_bin}/changelog.gz COMMAND_ERROR_IS_FATAL ANY)

foreach(tool ventilator worker sink)
  install(PROGRAMS $<TARGET_FILE:${tool}> DESTINATION ${BP_PKG_BINDIR}
          RENAME boardpipe-${tool} COMPONENT runtime)
  install(FILES ${_bp_pkg_src}/boardpipe.bash-completion DESTINATION ${BP_PKG_COMPLETIONDIR}
          RENAME boardpipe-${tool} COMPONENT runtime)
  install(FILES ${_bp_pkg_src}/boardpipe-${tool}.default DESTINATION ${BP_PKG_DEFAULTDIR}
          RENAME boardpipe-${tool} COMPONENT runtime)
endforeach()
# Manual pages (cmake/BpManPages.cmake): a package without them is not made.
install(CODE "
  foreach(t ${BP_MAN_TOOLS})
    if(NOT EXISTS \"${BP_MAN_DIR}/boardpipe-\${t}.1.gz\")
      message(FATAL_ERROR \"no manual page ${BP_MAN_DIR}/boardpipe-\${t}.1.gz: \"
        \"install help2man (scripts/bootstrap), configure again and build\")
    endif()
  endforeach()" COMPONENT runtime)
foreach(tool ${BP_MAN_TOOLS})
  install(FILES ${BP_MAN_DIR}/boardpipe-${tool}.1.gz DESTINATION ${BP_PKG_MANDIR}
          COMPONENT runtime OPTIONAL)
endforeach()
install(FILES ${_bp_pkg_bin}/boardpipe-worker.service
        DESTINATION ${BP_PKG_UNITDIR} COMPONENT runtime)
foreach(u ${_bp_host_units})
  install(FILES ${_bp_pkg_bin}/${u} DESTINATION ${BP_PKG_UNITDIR} COMPONENT runtime)
endforeach()
install(FILES ${_bp_pkg_bin}/README ${_bp_pkg_src}/copyright ${_bp_pkg_bin}/changelog.gz
        DESTINATION ${BP_PKG_DOCDIR} COMPONENT runtime)
# Every notice in third_party/notices/ (one file per linked component),
# read at install time: a notice added there is packaged without a change
# here. The patches to libzmq the libzmq notice speaks of.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/third_party/notices/
        DESTINATION ${BP_PKG_DOCDIR}/notices COMPONENT runtime
        PATTERN README EXCLUDE)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/third_party/patches/
        DESTINATION ${BP_PKG_DOCDIR}/patches COMPONENT runtime
        FILES_MATCHING PATTERN "*.patch")
# Only in the .deb: lintian's overrides (CPackProject.cmake.in leaves the
# component out of the tarball).
install(FILES ${_bp_pkg_src}/lintian-overrides DESTINATION usr/share/lintian/overrides
        RENAME boardpipe COMPONENT debian)
# Only in the tarball (see CPackProject.cmake.in): README and LICENSE at its top.
install(FILES ${_bp_pkg_bin}/README ${PROJECT_SOURCE_DIR}/LICENSE
        DESTINATION . COMPONENT toplevel EXCLUDE_FROM_ALL)

set(CPACK_PACKAGE_NAME boardpipe)
set(CPACK_PACKAGE_VENDOR boardpipe)
set(CPACK_PACKAGE_CONTACT "boardpipe developers <boardpipe@invalid.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "ZeroMQ task pipeline (ventilator, worker, sink) for single-board computers")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_FILE_NAME boardpipe-${PROJECT_VERSION}-${BP_PACKAGE_TARGET})
set(CPACK_OUTPUT_FILE_PREFIX ${PROJECT_BINARY_DIR}/package)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/cpack)
set(CPACK_PACKAGING_INSTALL_PREFIX /)
set(CPACK_STRIP_FILES OFF)   # already stripped by the Release link (-s)
set(CPACK_SOURCE_GENERATOR "")
if(BP_DEB_ARCH)
  set(CPACK_GENERATOR TGZ DEB)
else()
  set(CPACK_GENERATOR TGZ)
endif()

# Tarball: components runtime + toplevel in one archive.
set(CPACK_ARCHIVE_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_ARCHIVE_FILE_NAME ${CPACK_PACKAGE_FILE_NAME})
set(CPACK_INCLUDE_TOPLEVEL_DIRECTORY ON)
set(CPACK_COMPONENT_INCLUDE_TOPLEVEL_DIRECTORY ON)

# .deb: runtime + debian, one package.
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_DEBIAN_PACKAGE_NAME boardpipe)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${BP_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
# Which systems the .deb is for (dpkg --print-architecture there): amd64 for
# x86_64 PCs and boards; arm64 for Raspberry Pi OS 64-bit (Pi 3/4/5, Zero
# 2 W); armhf for Raspberry Pi OS 32-bit, built as ARMv6 (ARM1176JZF-S, VFP
# hard float) so that one armhf package runs on every Pi, the Zero and Pi 1
# included (Debian's own armhf is ARMv7 and would not). Static binaries: no
# Depends. The maintainer scripts need only deb-systemd-helper and
# deb-systemd-invoke, from init-system-helpers (Essential: yes).
if(BP_DEB_ARCH STREQUAL "armhf")
  set(_bp_deb_for "Built for armhf as ARMv6 code (${BP_TARGET_TRIPLE}, cpu ${BP_TARGET_CPU}): it
runs on every Raspberry Pi with Raspberry Pi OS 32-bit, Pi Zero and Pi 1
included, and on any other armhf Debian.")
elseif(BP_DEB_ARCH STREQUAL "arm64")
  set(_bp_deb_for "Built for arm64 (${BP_TARGET_TRIPLE}, cpu ${BP_TARGET_CPU}): Raspberry Pi OS
64-bit on a Pi 3, 4, 5 or Zero 2 W, and any other arm64 Debian.")
else()
  set(_bp_deb_for "Built for ${BP_DEB_ARCH} (${BP_TARGET_TRIPLE}, baseline x86-64).")
endif()
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Static musl binaries boardpipe-ventilator, boardpipe-worker and
boardpipe-sink with libzmq built in: no runtime dependencies. A
ventilator on a host hands tasks to workers on the boards as they ask for
them, and keeps each task until the sink has acknowledged its result.
Systemd units for the worker (boardpipe-worker.service) and the host
roles (boardpipe-sink.service, boardpipe-ventilator@.service), off until
enabled, with their settings in /etc/default.
${_bp_deb_for}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_bp_pkg_bin}/deb/conffiles ${_bp_pkg_bin}/deb/postinst ${_bp_pkg_bin}/deb/prerm
    ${_bp_pkg_bin}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Reproducible packages (toolchains/README.md): SOURCE_DATE_EPOCH is set in
# CPackProject.cmake.in, the tarball sorted by ReproTgz.cmake. The staged
# directories' modes follow the umask: scripts/package sets 022.
configure_file(${_bp_pkg_src}/CPackProject.cmake.in
               ${PROJECT_BINARY_DIR}/CPackProject.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_BINARY_DIR}/CPackProject.cmake)
set(CPACK_POST_BUILD_SCRIPTS ${_bp_pkg_src}/ReproTgz.cmake)

include(CPack)
