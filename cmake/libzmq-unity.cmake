# Included into libzmq's own build (CMAKE_PROJECT_INCLUDE): a unity build,
# several of its .cpp files compiled as one. libzmq is most of a cold build
# (the demo's, CI's, a new board target's); this cuts its compile CPU time
# by about 3x (x86_64: ~200 s -> 60 s of CPU). The two C files define
# clashing one-letter macros/functions (sha1.c's S(), tweetnacl.c's S())
# and are compiled on their own. The .cpp files' own #defines were checked
# for leaks into the files after them in a batch: none changes their code.
set(CMAKE_UNITY_BUILD ON)
set_source_files_properties(src/tweetnacl.c external/sha1/sha1.c
  PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
