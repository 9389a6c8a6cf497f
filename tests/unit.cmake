# Unit tests: one cmocka executable per library module. Included from
# tests/CMakeLists.txt. Registered as add_test(NAME x COMMAND <target>) so
# CTest runs cross builds under CMAKE_CROSSCOMPILING_EMULATOR (qemu-user).
set(BP_UNIT_MODULES frame path sha256 vfiles spec labels heat dispatch rbook sinkm upload sinkfiles sim wchan vbatch journal curve metrics opts transform stats track input exec sock fd xfer wfile)

# The list and the files must agree, loudly: a listed module without its
# test_<module>.c, or a test_*.c that no list registers (it would never
# run), stops the configure step.
set(_bp_registered test_pipeline.c) # tests/CMakeLists.txt registers it
foreach(m IN LISTS BP_UNIT_MODULES)
  if(NOT EXISTS ${CMAKE_CURRENT_LIST_DIR}/test_${m}.c)
    message(FATAL_ERROR "tests/unit.cmake lists module '${m}' but "
      "tests/test_${m}.c does not exist: add it or drop '${m}' from BP_UNIT_MODULES")
  endif()
  list(APPEND _bp_registered test_${m}.c)
endforeach()
file(GLOB _bp_test_sources RELATIVE ${CMAKE_CURRENT_LIST_DIR}
  CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.c)
foreach(f IN LISTS _bp_test_sources)
  if(NOT f IN_LIST _bp_registered)
    message(FATAL_ERROR "tests/${f} is not registered: add its module to "
      "BP_UNIT_MODULES in tests/unit.cmake")
  endif()
endforeach()

foreach(m IN LISTS BP_UNIT_MODULES)
  add_executable(test_${m} ${CMAKE_CURRENT_LIST_DIR}/test_${m}.c)
  target_compile_options(test_${m} PRIVATE ${BP_WARNINGS})
  target_link_libraries(test_${m} PRIVATE boardpipe bp_cmocka)
  # libzmq is C++: link with the C++ driver (static libc++ in cross builds).
  set_target_properties(test_${m} PROPERTIES LINKER_LANGUAGE CXX)
  add_test(NAME test_${m} COMMAND test_${m})
  set_tests_properties(test_${m} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()

# Without CURVE, test_curve fails where CURVE is expected and skips (77,
# seen by the CI skip policy) where it is not.
target_compile_definitions(test_curve PRIVATE BP_EXPECT_CURVE=$<BOOL:${BP_EXPECT_CURVE}>)
set_tests_properties(test_curve PROPERTIES SKIP_RETURN_CODE 77)

# Command-running tests spawn /bin/sh and children: keep them off the
# other tests' toes on a small machine.
set_tests_properties(test_exec PROPERTIES TIMEOUT 600)
# qemu-user does not apply RLIMIT_DATA (--task-memory): test_exec checks
# the limit's effect only natively.
if(CMAKE_CROSSCOMPILING_EMULATOR)
  target_compile_definitions(test_exec PRIVATE BP_EMULATED=1)
endif()

# The whole-batch simulation (test_sim.c): 2000 seeds natively, a few
# hundred under an emulator (each seed is a whole batch with faults).
if(CMAKE_CROSSCOMPILING_EMULATOR)
  set_tests_properties(test_sim PROPERTIES ENVIRONMENT BP_SIM_SEEDS=300)
endif()
