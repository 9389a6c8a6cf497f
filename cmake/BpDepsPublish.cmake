# Copies the dependency install tree SRC into the dependency cache as DST
# (see BpThirdParty.cmake), with KEY_FILE (what the key was made of) as
# DST/.complete. Runs after every build of a build directory that built
# its own dependencies; does nothing once DST is there. The entry appears
# whole or not at all: it is copied beside DST and renamed. A cache that
# cannot be written is a warning, not a failed build.
if(EXISTS "${DST}/.complete")
  return()
endif()
get_filename_component(parent "${DST}" DIRECTORY)
get_filename_component(name "${DST}" NAME)
string(RANDOM LENGTH 8 tag)
set(tmp "${parent}/.${name}.${tag}")
file(MAKE_DIRECTORY "${parent}")
file(COPY "${SRC}/" DESTINATION "${tmp}")
file(COPY_FILE "${KEY_FILE}" "${tmp}/.complete" RESULT rc)
if(NOT rc EQUAL 0)
  file(REMOVE_RECURSE "${tmp}")
  message(WARNING "boardpipe: cannot write the dependency cache ${parent}: ${rc}")
  return()
endif()
file(RENAME "${tmp}" "${DST}" RESULT rc)
if(NOT rc EQUAL 0)
  # Another build published the same entry first: same key, same bits.
  file(REMOVE_RECURSE "${tmp}")
  if(NOT EXISTS "${DST}/.complete")
    message(WARNING "boardpipe: cannot publish ${DST}: ${rc}")
  endif()
  return()
endif()
message(STATUS "boardpipe: kept libzmq and cmocka in ${DST}")

# Keep the three newest entries of this target: older recipes are not
# coming back, and each entry is a few MB.
string(REGEX REPLACE "-[0-9a-f]+$" "" prefix "${name}")
file(GLOB entries LIST_DIRECTORIES true "${parent}/${prefix}-*")
set(stamped "")
foreach(e IN LISTS entries)
  if(EXISTS "${e}/.complete")
    file(TIMESTAMP "${e}/.complete" t "%s" UTC)
    list(APPEND stamped "${t}|${e}")
  endif()
endforeach()
list(SORT stamped COMPARE NATURAL ORDER DESCENDING)
list(LENGTH stamped n)
if(n GREATER 3)
  list(SUBLIST stamped 3 -1 old)
  foreach(o IN LISTS old)
    string(REGEX REPLACE "^[0-9]+\\|" "" o "${o}")
    message(STATUS "boardpipe: removing old dependency cache entry ${o}")
    file(REMOVE_RECURSE "${o}")
  endforeach()
endif()
