# The fuzz targets: tests/fuzz/fuzz_<name>.cpp, corpus in tests/fuzz/corpus/<name>/. Included by
# tests/fuzz/CMakeLists.txt (the clang sub-build's executables) and tests/CMakeLists.txt (the
# main build's CTest tests fuzz_<name>).
set(ARCEUS_FUZZ_TARGETS rest_body config idx wire checkpoint)
