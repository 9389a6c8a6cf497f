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
#   lib/systemd/system/boardpipe-worker.service   (from board/systemd/)
#   etc/default/boardpipe-worker                  (the worker's settings;
#                                                  a conffile in the .deb)
#   usr/share/doc/boardpipe/README
# and the tarball additionally has README at its top. scripts/package runs
# cpack for every built musl preset and collects the results into dist/.
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

set(BP_WORKER /${BP_PKG_BINDIR}/boardpipe-worker)
set(BP_ENVFILE /${BP_PKG_DEFAULTDIR}/boardpipe-worker)
set(_bp_unit_in ${PROJECT_SOURCE_DIR}/board/systemd/boardpipe-worker.service.in)
configure_file(${_bp_unit_in} ${_bp_pkg_bin}/boardpipe-worker.service @ONLY)
configure_file(${_bp_pkg_src}/README.in ${_bp_pkg_bin}/README @ONLY)
configure_file(${_bp_pkg_src}/conffiles.in ${_bp_pkg_bin}/deb/conffiles @ONLY)
foreach(s postinst prerm postrm)
  file(COPY ${_bp_pkg_src}/${s} DESTINATION ${_bp_pkg_bin}/deb
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
                        GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()

foreach(tool ventilator worker sink)
  install(PROGRAMS $<TARGET_FILE:${tool}> DESTINATION ${BP_PKG_BINDIR}
          RENAME boardpipe-${tool} COMPONENT runtime)
endforeach()
install(FILES ${_bp_pkg_bin}/boardpipe-worker.service
        DESTINATION ${BP_PKG_UNITDIR} COMPONENT runtime)
install(FILES ${_bp_pkg_src}/boardpipe-worker.default
        DESTINATION ${BP_PKG_DEFAULTDIR} RENAME boardpipe-worker COMPONENT runtime)
install(FILES ${_bp_pkg_bin}/README DESTINATION ${BP_PKG_DOCDIR} COMPONENT runtime)
# Only in the tarball (see CPackProject.cmake.in): README at its top.
install(FILES ${_bp_pkg_bin}/README DESTINATION . COMPONENT toplevel EXCLUDE_FROM_ALL)

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

# .deb: runtime only, one package.
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_DEBIAN_PACKAGE_NAME boardpipe)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${BP_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Static musl binaries boardpipe-ventilator, boardpipe-worker and
boardpipe-sink (libzmq built in, no runtime dependencies), and a systemd
unit for the worker configured through /etc/default/boardpipe-worker.
Built for ${BP_PACKAGE_TARGET} (${BP_TARGET_TRIPLE}, cpu ${BP_TARGET_CPU}).")
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
