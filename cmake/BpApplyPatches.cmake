# Applies the patches PATCHES ("|"-separated paths, in order) with PATCH in
# the current directory (ExternalProject's PATCH_COMMAND). The patch step
# runs again on the already extracted (and patched) tree when the list of
# patches changes, so a patch that is already applied is skipped rather
# than failed.
string(REPLACE "|" ";" PATCHES "${PATCHES}")
foreach(p IN LISTS PATCHES)
  execute_process(COMMAND "${PATCH}" -p1 -R -s -f --dry-run -i "${p}"
    OUTPUT_QUIET ERROR_QUIET RESULT_VARIABLE applied)
  if(applied EQUAL 0)
    message(STATUS "already applied: ${p}")
    continue()
  endif()
  execute_process(COMMAND "${PATCH}" -p1 -N -i "${p}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "boardpipe: ${p} does not apply")
  endif()
endforeach()
