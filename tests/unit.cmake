# Unit tests: one cmocka executable per library module. Included from
# tests/CMakeLists.txt. Registered as add_test(NAME x COMMAND <target>) so
# CTest runs cross builds under CMAKE_CROSSCOMPILING_EMULATOR (qemu-user).
set(BP_UNIT_MODULES frame opts transform stats track input exec sock)

foreach(m IN LISTS BP_UNIT_MODULES)
  add_executable(test_${m} ${CMAKE_CURRENT_LIST_DIR}/test_${m}.c)
  target_compile_options(test_${m} PRIVATE ${BP_WARNINGS})
  target_link_libraries(test_${m} PRIVATE boardpipe bp_cmocka)
  # libzmq is C++: link with the C++ driver (static libc++ in cross builds).
  set_target_properties(test_${m} PROPERTIES LINKER_LANGUAGE CXX)
  add_test(NAME test_${m} COMMAND test_${m})
  set_tests_properties(test_${m} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()

# Command-running tests spawn /bin/sh and children: keep them off the
# other tests' toes on a small machine.
set_tests_properties(test_exec PROPERTIES TIMEOUT 600)
