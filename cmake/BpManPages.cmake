# Manual pages, generated from each tool's --help by help2man
# (cmake/package/manpage.sh) plus docs/man/<name>.h2m (EXIT STATUS, FILES,
# EXAMPLES, SEE ALSO; ENVIRONMENT is made from --help's options), so a page
# cannot drift from --help. Written to build/<preset>/man/:
#   boardpipe-{ventilator,worker,sink}.1 (+ .1.gz, gzip -9n: what the
#   packages install) from this preset's binaries, run under its emulator;
#   bpfleet.1 from board/bpfleet --help (bpfleet is not in the packages).
# The pages' date is that of the newest entry in cmake/package/changelog
# (reproducible, and it changes with the version). Built with `all` when
# help2man is installed (scripts/bootstrap installs it); without it the
# build goes on and packaging stops with the reason (BpPackage.cmake).
find_program(BP_HELP2MAN help2man)
find_program(BP_GZIP_PROGRAM gzip)
set(BP_MAN_DIR ${PROJECT_BINARY_DIR}/man)
set(BP_MAN_TOOLS ventilator worker sink)
set(BP_MAN_PAGES "")
if(NOT BP_HELP2MAN OR NOT BP_GZIP_PROGRAM)
  message(STATUS "help2man or gzip not found: no manual pages (apt-get install help2man)")
  return()
endif()

# SOURCE_DATE_EPOCH of the changelog's newest entry (" -- NAME <MAIL>  DATE").
file(STRINGS ${PROJECT_SOURCE_DIR}/cmake/package/changelog _bp_cl REGEX "^ -- ")
list(GET _bp_cl 0 _bp_cl)
string(REGEX REPLACE "^ -- .*>  " "" _bp_cl_date "${_bp_cl}")
execute_process(COMMAND date -u -d "${_bp_cl_date}" +%s
  OUTPUT_VARIABLE BP_MAN_EPOCH OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _bp_rc)
if(NOT _bp_rc EQUAL 0 OR NOT BP_MAN_EPOCH MATCHES "^[0-9]+$")
  message(FATAL_ERROR "cmake/package/changelog: cannot read the date of '${_bp_cl}'")
endif()

set(_bp_man_sh ${PROJECT_SOURCE_DIR}/cmake/package/manpage.sh)
set(_bp_desc_ventilator "hand tasks to boardpipe workers and keep each until the sink has its result")
set(_bp_desc_worker "ask a boardpipe ventilator for tasks, run them and send the results to the sink")
set(_bp_desc_sink "collect boardpipe results, acknowledge each and write each task's result once")
set(_bp_desc_bpfleet "deploy boardpipe workers to a fleet of boards over ssh")

# _bp_man(NAME DESC-VAR PROGRAM-AND-ARGS... DEPENDS ...)
function(_bp_man name desc)
  cmake_parse_arguments(M "" "" "COMMAND;DEPENDS" ${ARGN})
  set(page ${BP_MAN_DIR}/${name}.1)
  set(inc ${PROJECT_SOURCE_DIR}/docs/man/${name}.h2m)
  add_custom_command(OUTPUT ${page} ${page}.gz
    COMMAND ${CMAKE_COMMAND} -E make_directory ${BP_MAN_DIR}
    COMMAND ${CMAKE_COMMAND} -E env SOURCE_DATE_EPOCH=${BP_MAN_EPOCH}
            sh ${_bp_man_sh} ${page} ${name} ${PROJECT_VERSION} "${desc}" ${inc} ${M_COMMAND}
    COMMAND ${BP_GZIP_PROGRAM} -9 -n -c ${page} > ${page}.gz
    DEPENDS ${_bp_man_sh} ${inc} ${PROJECT_SOURCE_DIR}/cmake/package/changelog ${M_DEPENDS}
    COMMENT "help2man: ${name}.1"
    VERBATIM)
  set(BP_MAN_PAGES ${BP_MAN_PAGES} ${page} PARENT_SCOPE)
endfunction()

foreach(tool ${BP_MAN_TOOLS})
  _bp_man(boardpipe-${tool} "${_bp_desc_${tool}}"
    COMMAND ${CMAKE_CROSSCOMPILING_EMULATOR} $<TARGET_FILE:${tool}>
    DEPENDS ${tool})
endforeach()
# bpfleet checks for bash 4.3+ and ssh before it answers --help.
find_program(BP_BASH_PROGRAM bash)
find_program(BP_SSH_PROGRAM ssh)
if(BP_BASH_PROGRAM AND BP_SSH_PROGRAM)
  _bp_man(bpfleet "${_bp_desc_bpfleet}"
    COMMAND ${BP_BASH_PROGRAM} ${PROJECT_SOURCE_DIR}/board/bpfleet
    DEPENDS ${PROJECT_SOURCE_DIR}/board/bpfleet)
else()
  message(STATUS "bash or ssh not found: no bpfleet.1")
endif()
add_custom_target(man ALL DEPENDS ${BP_MAN_PAGES})
