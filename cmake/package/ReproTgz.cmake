# CPACK_POST_BUILD_SCRIPTS (cmake/BpPackage.cmake), run by cpack after each
# generator, on the package in _CPack_Packages before it is copied out.
#
# CPack 3.25 already honours SOURCE_DATE_EPOCH (set by CPackProject.cmake):
# every mtime in the tarball and the .deb is that time, owners are
# root/root (0/0) and the gzip headers carry no timestamp. The .deb's
# members are sorted, but the TGZ generator writes entries in the order the
# file system lists the staging directory, which differs between file
# systems. So the tarball is rewritten here: same files, sorted by name,
# mtime SOURCE_DATE_EPOCH, owner root:0/root:0, modes u+rw,go=rX (the
# staged directories follow the umask), `gzip -n`.
if(NOT CPACK_GENERATOR STREQUAL "TGZ")
  return()
endif()
find_program(BP_TAR tar REQUIRED)
find_program(BP_GZIP gzip REQUIRED)
set(_bp_mtime "")
if(NOT "$ENV{SOURCE_DATE_EPOCH}" STREQUAL "")
  set(_bp_mtime "--mtime=@$ENV{SOURCE_DATE_EPOCH}")
endif()
foreach(pkg IN LISTS CPACK_PACKAGE_FILES)
  if(NOT pkg MATCHES "\\.tar\\.gz$")
    continue()
  endif()
  set(tmp "${CPACK_TOPLEVEL_DIRECTORY}/bp-sorted")
  file(REMOVE_RECURSE "${tmp}")
  file(MAKE_DIRECTORY "${tmp}")
  execute_process(COMMAND ${BP_TAR} -xpzf "${pkg}" -C "${tmp}"
    COMMAND_ERROR_IS_FATAL ANY)
  file(GLOB tops RELATIVE "${tmp}" "${tmp}/*")
  list(SORT tops)
  execute_process(
    COMMAND ${BP_TAR} --sort=name --format=gnu ${_bp_mtime}
            --owner=root:0 --group=root:0 --mode=u+rw,go=rX
            -C "${tmp}" -cf - ${tops}
    COMMAND ${BP_GZIP} -9 -n
    OUTPUT_FILE "${pkg}.sorted"
    COMMAND_ERROR_IS_FATAL ANY)
  file(RENAME "${pkg}.sorted" "${pkg}")
  file(REMOVE_RECURSE "${tmp}")
endforeach()
