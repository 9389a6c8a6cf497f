# Included into cmocka's own build (CMAKE_PROJECT_INCLUDE): cmocka.h
# typedefs uintptr_t itself unless told it exists, which clashes with musl.
add_compile_definitions(_UINTPTR_T_DEFINED)
